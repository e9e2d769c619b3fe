"""Batch's durable state: compute environments, queues, job definitions, jobs.

Job state changes that ripple (a finished job releases or fails its dependents, an
array child settles its parent) happen inside the transaction that made the change,
so a crash never leaves a dependent waiting on a job that is already final.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kobako.batch.common import TERMINAL, WAITING, dumps, loads, now_ms
from kobako.store.db import Database, Row

SCHEMA = [
    """
    CREATE TABLE batch_compute_envs (
        arn TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        max_vcpus REAL,
        spec TEXT NOT NULL,
        created INTEGER NOT NULL,
        UNIQUE (account, region, name)
    );
    CREATE TABLE batch_queues (
        arn TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        ce_order TEXT NOT NULL,
        spec TEXT NOT NULL,
        created INTEGER NOT NULL,
        UNIQUE (account, region, name)
    );
    CREATE TABLE batch_job_defs (
        arn TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        status TEXT NOT NULL,
        spec TEXT NOT NULL,
        UNIQUE (account, region, name, revision)
    );
    CREATE TABLE batch_jobs (
        seq INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL UNIQUE,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        queue_arn TEXT NOT NULL,
        def_arn TEXT NOT NULL,
        status TEXT NOT NULL,
        status_reason TEXT,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        stopped_at INTEGER,
        vcpus REAL NOT NULL,
        memory INTEGER,
        gpus INTEGER NOT NULL DEFAULT 0,
        parent_id TEXT,
        array_index INTEGER,
        array_size INTEGER,
        ce_arn TEXT,
        runtime_ref TEXT,
        attempt_started INTEGER,
        detail TEXT NOT NULL,
        attempts TEXT NOT NULL DEFAULT '[]',
        cancelled INTEGER NOT NULL DEFAULT 0,
        terminated INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX batch_jobs_by_status ON batch_jobs (status, queue_arn);
    CREATE INDEX batch_jobs_by_parent ON batch_jobs (parent_id, array_index);
    CREATE TABLE batch_deps (
        job_id TEXT NOT NULL,
        depends_on TEXT NOT NULL,
        PRIMARY KEY (job_id, depends_on)
    ) WITHOUT ROWID;
    CREATE INDEX batch_deps_by_target ON batch_deps (depends_on);
    CREATE TABLE batch_tags (
        arn TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (arn, key)
    ) WITHOUT ROWID
    """,
    # Fair share and GPUs: a job's share identifier and scheduling priority, the GPU
    # devices its latest attempt got; runnable jobs indexed in fair-share order.
    """
    ALTER TABLE batch_jobs ADD COLUMN share TEXT;
    ALTER TABLE batch_jobs ADD COLUMN sched_priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batch_jobs ADD COLUMN gpu_ids TEXT;
    CREATE INDEX batch_jobs_runnable ON batch_jobs (queue_arn, share, sched_priority DESC, seq)
        WHERE status = 'RUNNABLE';
    CREATE TABLE batch_sched_policies (
        arn TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        created INTEGER NOT NULL,
        UNIQUE (account, region, name)
    )
    """,
    # Multi-node parallel jobs: the parent holds the node count (and the whole gang's
    # resources, so the scheduler places it at once); its nodes `<id>#<n>` hold their
    # index and are never candidates themselves.
    """
    ALTER TABLE batch_jobs ADD COLUMN num_nodes INTEGER;
    ALTER TABLE batch_jobs ADD COLUMN node_index INTEGER;
    DROP INDEX batch_jobs_runnable;
    CREATE INDEX batch_jobs_runnable ON batch_jobs (queue_arn, share, sched_priority DESC, seq)
        WHERE status = 'RUNNABLE' AND node_index IS NULL
    """,
]

DEPENDENT_FAILED = "Dependent Job failed"
ARRAY_CHILD_FAILED = "Array Child Job failed"


@dataclass
class NewJob:
    """One row to insert at submit; `deps` are job ids it waits for."""

    job_id: str
    account: str
    region: str
    name: str
    queue_arn: str
    def_arn: str
    vcpus: float
    memory: int | None
    gpus: int
    detail: dict[str, Any]
    parent_id: str | None = None
    array_index: int | None = None
    array_size: int | None = None
    deps: list[str] = field(default_factory=list)
    share: str | None = None
    sched_priority: int = 0
    num_nodes: int | None = None
    node_index: int | None = None


@dataclass
class Ended:
    """A finished attempt to record: `status` RUNNABLE means retry, else final.
    `nodes_again`: a multi-node parent retried, so its nodes wait (RUNNABLE) again."""

    job_id: str
    attempts: list[dict[str, Any]]
    status: str
    reason: str | None
    terminated: bool = False
    nodes_again: bool = False


class BatchStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("batch", SCHEMA)

    # ------------------------------------------------------------ tags

    def set_tags(self, arn: str, tags: dict[str, str]) -> None:
        self.db.executemany(
            "INSERT INTO batch_tags (arn, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (arn, key) DO UPDATE SET value = excluded.value",
            [(arn, k, v) for k, v in tags.items()],
        )

    def remove_tags(self, arn: str, keys: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM batch_tags WHERE arn = ? AND key = ?",
                            [(arn, k) for k in keys])

    def tags_many(self, arns: Sequence[str]) -> dict[str, dict[str, str]]:
        """Tags of many resources in one query (DescribeJobs)."""
        out: dict[str, dict[str, str]] = {}
        if arns:
            rows = self.db.query("SELECT arn, key, value FROM batch_tags WHERE arn IN "
                                 "(SELECT value FROM json_each(?))", (dumps(list(arns)),))
            for r in rows:
                out.setdefault(str(r["arn"]), {})[str(r["key"])] = str(r["value"])
        return out

    def tags(self, arn: str) -> dict[str, str]:
        rows = self.db.query("SELECT key, value FROM batch_tags WHERE arn = ?", (arn,))
        return {str(r["key"]): str(r["value"]) for r in rows}

    # ------------------------------------------------------------ jobs: reads

    def job(self, job_id: str) -> Row | None:
        return self.db.one("SELECT * FROM batch_jobs WHERE job_id = ?", (job_id,))

    def jobs(self, job_ids: Sequence[str]) -> list[Row]:
        if not job_ids:
            return []
        marks = ",".join("?" * len(job_ids))
        return self.db.query(f"SELECT * FROM batch_jobs WHERE job_id IN ({marks})", job_ids)

    def children_summary(self, parent_id: str) -> dict[str, int]:
        rows = self.db.query(
            "SELECT status, count(*) AS n FROM batch_jobs WHERE parent_id = ? GROUP BY status",
            (parent_id,),
        )
        return {str(r["status"]): int(r["n"]) for r in rows}

    def children(self, parent_id: str) -> list[Row]:
        return self.db.query(
            "SELECT * FROM batch_jobs WHERE parent_id = ? ORDER BY array_index", (parent_id,)
        )

    def nodes(self, parent_id: str) -> list[Row]:
        """A multi-node job's nodes, by index."""
        return self.db.query(
            "SELECT * FROM batch_jobs WHERE parent_id = ? AND node_index IS NOT NULL "
            "ORDER BY node_index", (parent_id,))

    def in_flight(self) -> list[Row]:
        """Attempts the database says are starting or running (after a restart: orphans)."""
        return self.db.query(
            "SELECT * FROM batch_jobs WHERE status IN ('STARTING', 'RUNNING') "
            "AND (array_size IS NULL OR parent_id IS NOT NULL)"
        )

    # ------------------------------------------------------------ jobs: submit

    def insert(self, jobs: Sequence[NewJob], tags: dict[str, str] | None = None,
               task_tags: dict[str, dict[str, str]] | None = None) -> int:
        """Insert jobs, each moved on to PENDING, RUNNABLE or FAILED in the same
        transaction (a job with no dependencies goes straight to RUNNABLE: one statement);
        `tags` go on the first job, `task_tags` on task ARNs. Returns the creation time."""
        now = now_ms()

        def status(j: NewJob) -> str:
            if j.array_size and j.parent_id is None:
                return "PENDING"
            if j.node_index is not None:  # a node waits as its parent (jobs[0]) does
                return "SUBMITTED" if jobs[0].deps else "RUNNABLE"
            return "SUBMITTED" if j.deps else "RUNNABLE"

        with self.db.transaction():
            self.db.executemany(
                "INSERT INTO batch_jobs (job_id, account, region, name, queue_arn, def_arn, "
                "status, created_at, vcpus, memory, gpus, parent_id, array_index, array_size, "
                "detail, share, sched_priority, num_nodes, node_index) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (j.job_id, j.account, j.region, j.name, j.queue_arn, j.def_arn,
                     status(j), now, j.vcpus, j.memory, j.gpus, j.parent_id, j.array_index,
                     j.array_size, dumps(j.detail), j.share, j.sched_priority, j.num_nodes,
                     j.node_index)
                    for j in jobs
                ],
            )
            if any(j.deps for j in jobs):
                self.db.executemany(
                    "INSERT OR IGNORE INTO batch_deps (job_id, depends_on) VALUES (?, ?)",
                    [(j.job_id, dep) for j in jobs for dep in j.deps],
                )
            if tags and jobs:
                self.set_tags(job_arn_of(jobs[0]), tags)
            for task, values in (task_tags or {}).items():
                self.set_tags(task, values)
            for job in jobs:
                if status(job) != "SUBMITTED" or job.node_index is not None:
                    continue
                row = self.job(job.job_id)
                if row is None or row["status"] != "SUBMITTED":
                    continue
                self._release(job.job_id, now)
            parents = {j.parent_id for j in jobs if j.parent_id and j.node_index is None}
            for parent in parents:
                if self._refresh_parent(parent, now):
                    self._settle([parent], now)
        return now

    def _unmet(self, job_id: str) -> tuple[int, int]:
        """(dependencies not yet SUCCEEDED, dependencies FAILED)."""
        row = self.db.one(
            "SELECT COALESCE(SUM(j.status IS NULL OR j.status != 'SUCCEEDED'), 0) AS unmet, "
            "COALESCE(SUM(j.status = 'FAILED'), 0) AS failed FROM batch_deps d "
            "LEFT JOIN batch_jobs j ON j.job_id = d.depends_on WHERE d.job_id = ?",
            (job_id,),
        )
        assert row is not None
        return int(row["unmet"]), int(row["failed"])

    def _release(self, job_id: str, now: int) -> None:
        """A waiting job whose dependencies changed: RUNNABLE, PENDING, or FAILED."""
        unmet, failed = self._unmet(job_id)
        if failed:
            self.db.execute(
                "UPDATE batch_jobs SET status = 'FAILED', status_reason = ?, stopped_at = ? "
                "WHERE job_id = ?", (DEPENDENT_FAILED, now, job_id))
            self._mirror_nodes(job_id, "FAILED", DEPENDENT_FAILED, now)
            self._settle([job_id], now)
        else:
            status = "PENDING" if unmet else "RUNNABLE"
            self.db.execute("UPDATE batch_jobs SET status = ? WHERE job_id = ?",
                            (status, job_id))
            self._mirror_nodes(job_id, status, None, None)

    def _mirror_nodes(self, parent_id: str, status: str, reason: str | None,
                      stopped: int | None) -> None:
        """A waiting multi-node job's nodes wait (or fail) with it; a keyed no-op for
        other jobs."""
        self.db.execute(
            "UPDATE batch_jobs SET status = ?, status_reason = ?, stopped_at = ? "
            "WHERE parent_id = ? AND node_index IS NOT NULL "
            "AND status IN ('SUBMITTED', 'PENDING', 'RUNNABLE')",
            (status, reason, stopped, parent_id))

    def _settle(self, finished: list[str], now: int) -> None:
        """Ripple final states: release or fail dependents, settle array parents."""
        work = list(finished)
        while work:
            job_id = work.pop()
            row = self.db.one("SELECT status, parent_id FROM batch_jobs WHERE job_id = ?",
                              (job_id,))
            if row is None:
                continue
            waiting = self.db.query(
                "SELECT d.job_id FROM batch_deps d JOIN batch_jobs j ON j.job_id = d.job_id "
                "WHERE d.depends_on = ? AND j.status IN ('SUBMITTED', 'PENDING')", (job_id,))
            for dep in waiting:
                dependent = str(dep["job_id"])
                if row["status"] == "FAILED":
                    self.db.execute(
                        "UPDATE batch_jobs SET status = 'FAILED', status_reason = ?, "
                        "stopped_at = ? WHERE job_id = ?", (DEPENDENT_FAILED, now, dependent))
                    self._mirror_nodes(dependent, "FAILED", DEPENDENT_FAILED, now)
                    work.append(dependent)
                else:
                    self._release(dependent, now)
            parent = row["parent_id"]
            if parent and self._refresh_parent(str(parent), now):
                work.append(str(parent))

    def _refresh_parent(self, parent_id: str, now: int) -> bool:
        """Recompute an array parent's status from its children; True if it just ended."""
        parent = self.job(parent_id)
        if parent is None or parent["status"] in TERMINAL or parent["num_nodes"] is not None:
            return False  # a multi-node parent follows its main node (the engine writes it)
        summary = self.children_summary(parent_id)
        total = sum(summary.values())
        done = summary.get("SUCCEEDED", 0) + summary.get("FAILED", 0)
        if total and done == total:
            failed = summary.get("FAILED", 0) > 0
            self.db.execute(
                "UPDATE batch_jobs SET status = ?, status_reason = ?, stopped_at = ? "
                "WHERE job_id = ?",
                ("FAILED" if failed else "SUCCEEDED", ARRAY_CHILD_FAILED if failed else None,
                 now, parent_id),
            )
            return True
        started = total - sum(summary.get(s, 0) for s in WAITING)
        if started and parent["status"] != "RUNNING":
            self.db.execute(
                "UPDATE batch_jobs SET status = 'RUNNING', started_at = COALESCE(started_at, ?) "
                "WHERE job_id = ?", (now, parent_id))
        return False

    # ------------------------------------------------------------ jobs: scheduling

    _CANDIDATE = ("SELECT seq, job_id, vcpus, memory, gpus, status_reason, share, "
                  "sched_priority FROM batch_jobs ")

    def runnable(self, queue_arn: str, limit: int, after: Row | None = None) -> list[Row]:
        """A FIFO queue's oldest RUNNABLE jobs, a page at a time (after `after`)."""
        return self.db.query(
            self._CANDIDATE + "WHERE status = 'RUNNABLE' AND node_index IS NULL AND "
            "queue_arn = ? AND seq > ? ORDER BY seq LIMIT ?",
            (queue_arn, after["seq"] if after else 0, limit))

    def runnable_shares(self, queue_arn: str) -> list[str]:
        rows = self.db.query("SELECT DISTINCT share FROM batch_jobs WHERE status = 'RUNNABLE' "
                             "AND node_index IS NULL AND queue_arn = ?", (queue_arn,))
        return [str(r["share"]) for r in rows]

    def runnable_in_share(self, queue_arn: str, share: str, limit: int,
                          after: Row | None = None) -> list[Row]:
        """One share's RUNNABLE jobs: highest scheduling priority first, then oldest."""
        prio, seq = (after["sched_priority"], after["seq"]) if after else (1 << 62, 0)
        return self.db.query(
            self._CANDIDATE + "WHERE status = 'RUNNABLE' AND node_index IS NULL AND "
            "queue_arn = ? AND share = ? AND (sched_priority < ? OR "
            "(sched_priority = ? AND seq > ?)) ORDER BY sched_priority DESC, seq LIMIT ?",
            (queue_arn, share, prio, prio, seq, limit))

    def recent_share_jobs(self, queue_arn: str, since_ms: int) -> list[Row]:
        return self.db.query(
            "SELECT share, vcpus, started_at, stopped_at FROM batch_jobs WHERE queue_arn = ? "
            "AND share IS NOT NULL AND started_at IS NOT NULL AND parent_id IS NULL "
            "AND array_size IS NULL AND COALESCE(stopped_at, started_at) >= ?"
            " UNION ALL SELECT share, vcpus, started_at, stopped_at FROM batch_jobs "
            "WHERE queue_arn = ? AND share IS NOT NULL AND started_at IS NOT NULL AND "
            "parent_id IS NOT NULL AND node_index IS NULL "
            "AND COALESCE(stopped_at, started_at) >= ?",
            (queue_arn, since_ms, queue_arn, since_ms))

    def claim(self, assignments: Sequence[Sequence[str | None]]) -> list[Row]:
        """Move RUNNABLE jobs to STARTING: (job id, compute environment, GPU ids as JSON
        or None) each. One keyed UPDATE per job: an UPDATE ... FROM json_each would scan
        every RUNNABLE job (SQLite drives it from the status index)."""
        claimed: list[Row] = []
        for job_id, ce, gpus, *_ in ([*a, None] for a in assignments):
            rows = self.db.query(
                "UPDATE batch_jobs SET status = 'STARTING', ce_arn = ?, gpu_ids = ?, "
                "status_reason = NULL, runtime_ref = NULL WHERE job_id = ? "
                "AND status = 'RUNNABLE' RETURNING *", (ce, gpus, job_id))
            if rows and rows[0]["num_nodes"] is not None:
                # The gang: every node is placed with its parent, never some of them.
                self.db.execute(
                    "UPDATE batch_jobs SET status = 'STARTING', ce_arn = ?, "
                    "status_reason = NULL, runtime_ref = NULL WHERE parent_id = ? "
                    "AND node_index IS NOT NULL AND status = 'RUNNABLE'", (ce, job_id))
            claimed += rows
        return claimed

    def set_reason(self, job_id: str, reason: str | None) -> None:
        self.db.execute("UPDATE batch_jobs SET status_reason = ? WHERE job_id = ?",
                        (reason, job_id))

    def mark_running(self, job_id: str, started: int, ref: str) -> None:
        row = self.job(job_id)
        self.apply([(job_id, started, ref, row["parent_id"] if row else None)], [])

    def end_attempt(
        self, job_id: str, attempt: dict[str, Any], status: str, reason: str | None,
        terminated: bool = False,
    ) -> None:
        """Record a finished attempt; `status` RUNNABLE means retry, else final."""
        row = self.job(job_id)
        if row is None:
            return
        attempts = [*(loads(row["attempts"]) or []), attempt]
        self.apply([], [Ended(job_id, attempts, status, reason, terminated)])

    def apply(self, started: Sequence[tuple[str, int, str, str | None]],
              ended: Sequence[Ended], in_transaction: bool = False) -> None:
        """Record started attempts (job id, start ms, runtime ref, array parent) and
        finished ones in one transaction, started first: the scheduler's batched write."""
        if not started and not ended:
            return
        if not in_transaction:
            with self.db.transaction():
                self.apply(started, ended, in_transaction=True)
            return
        now = now_ms()
        if started:
            self.db.executemany(
                "UPDATE batch_jobs SET status = 'RUNNING', started_at = ?, "
                "attempt_started = ?, runtime_ref = ? WHERE job_id = ? "
                "AND status = 'STARTING'",
                [(at, at, ref, job_id) for job_id, at, ref, _ in started])
            for parent in {p for *_, p in started if p}:
                self._refresh_parent(parent, now)
        if ended:
            self.db.executemany(
                "UPDATE batch_jobs SET status = ?, status_reason = ?, attempts = ?, "
                "stopped_at = ?, ce_arn = NULL, runtime_ref = NULL, "
                "terminated = terminated OR ? WHERE job_id = ?",
                [(e.status, e.reason, dumps(e.attempts),
                  now if e.status in TERMINAL else None, e.terminated, e.job_id)
                 for e in ended])
            again = [(e.job_id,) for e in ended if e.nodes_again]
            if again:
                self.db.executemany(
                    "UPDATE batch_jobs SET status = 'RUNNABLE', stopped_at = NULL, "
                    "ce_arn = NULL, runtime_ref = NULL WHERE parent_id = ? "
                    "AND node_index IS NOT NULL", again)
            self._settle([e.job_id for e in ended if e.status in TERMINAL], now)

    def stop_waiting(self, job_ids: Sequence[str], reason: str, cancelled: bool) -> list[str]:
        """Fail jobs that have not started yet (CancelJob/TerminateJob); returns those hit."""
        now = now_ms()
        hit: list[str] = []
        with self.db.transaction():
            for job_id in job_ids:
                changed = self.db.execute(
                    "UPDATE batch_jobs SET status = 'FAILED', status_reason = ?, stopped_at = ?, "
                    "cancelled = cancelled OR ?, terminated = terminated OR ? WHERE job_id = ? "
                    "AND status IN ('SUBMITTED', 'PENDING', 'RUNNABLE')",
                    (reason, now, cancelled, not cancelled, job_id))
                if changed:
                    hit.append(job_id)
            self._settle(hit, now)
        return hit

    def list_jobs(self, where: str, params: Sequence[Any], offset: int, limit: int) -> list[Row]:
        return self.db.query(
            f"SELECT * FROM batch_jobs WHERE {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
            (*params, limit, offset))


def job_arn_of(job: NewJob) -> str:
    return f"arn:aws:batch:{job.region}:{job.account}:job/{job.job_id}"
