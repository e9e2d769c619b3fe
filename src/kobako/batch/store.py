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
    """
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

    def in_flight(self) -> list[Row]:
        """Attempts the database says are starting or running (after a restart: orphans)."""
        return self.db.query(
            "SELECT * FROM batch_jobs WHERE status IN ('STARTING', 'RUNNING') "
            "AND (array_size IS NULL OR parent_id IS NOT NULL)"
        )

    # ------------------------------------------------------------ jobs: submit

    def insert(self, jobs: Sequence[NewJob]) -> None:
        """Insert jobs as SUBMITTED, then move each to PENDING, RUNNABLE or FAILED."""
        now = now_ms()
        with self.db.transaction():
            self.db.executemany(
                "INSERT INTO batch_jobs (job_id, account, region, name, queue_arn, def_arn, "
                "status, created_at, vcpus, memory, gpus, parent_id, array_index, array_size, "
                "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (j.job_id, j.account, j.region, j.name, j.queue_arn, j.def_arn,
                     "PENDING" if j.array_size and j.parent_id is None else "SUBMITTED",
                     now, j.vcpus, j.memory, j.gpus, j.parent_id, j.array_index,
                     j.array_size, dumps(j.detail))
                    for j in jobs
                ],
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO batch_deps (job_id, depends_on) VALUES (?, ?)",
                [(j.job_id, dep) for j in jobs for dep in j.deps],
            )
            for job in jobs:
                if job.array_size and job.parent_id is None:
                    continue
                row = self.job(job.job_id)
                if row is None or row["status"] != "SUBMITTED":
                    continue
                self._release(job.job_id, now)
            parents = {j.parent_id for j in jobs if j.parent_id}
            for parent in parents:
                if self._refresh_parent(parent, now):
                    self._settle([parent], now)

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
            self._settle([job_id], now)
        else:
            self.db.execute(
                "UPDATE batch_jobs SET status = ? WHERE job_id = ?",
                ("PENDING" if unmet else "RUNNABLE", job_id),
            )

    def _settle(self, finished: list[str], now: int) -> None:
        """Ripple final states: release or fail dependents, settle array parents."""
        work = list(finished)
        while work:
            job_id = work.pop()
            row = self.job(job_id)
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
                    work.append(dependent)
                else:
                    self._release(dependent, now)
            parent = row["parent_id"]
            if parent and self._refresh_parent(str(parent), now):
                work.append(str(parent))

    def _refresh_parent(self, parent_id: str, now: int) -> bool:
        """Recompute an array parent's status from its children; True if it just ended."""
        parent = self.job(parent_id)
        if parent is None or parent["status"] in TERMINAL:
            return False
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

    def runnable(self, limit: int) -> list[Row]:
        """RUNNABLE jobs of enabled queues, best queue priority first, then oldest."""
        return self.db.query(
            "SELECT j.job_id, j.queue_arn, j.vcpus, j.memory, j.gpus, j.status_reason, "
            "q.ce_order FROM batch_jobs j JOIN batch_queues q ON q.arn = j.queue_arn "
            "WHERE j.status = 'RUNNABLE' AND q.state = 'ENABLED' "
            "ORDER BY q.priority DESC, j.seq LIMIT ?", (limit,))

    def claim(self, assignments: list[tuple[str, str]]) -> list[Row]:
        """Move RUNNABLE jobs to STARTING on their compute environments, in one UPDATE."""
        if not assignments:
            return []
        return self.db.query(
            "UPDATE batch_jobs AS j SET status = 'STARTING', ce_arn = a.ce, "
            "status_reason = NULL, runtime_ref = NULL FROM (SELECT value ->> 0 AS id, "
            "value ->> 1 AS ce FROM json_each(?)) AS a "
            "WHERE j.job_id = a.id AND j.status = 'RUNNABLE' RETURNING *",
            (dumps(assignments),),
        )

    def set_reason(self, job_id: str, reason: str | None) -> None:
        self.db.execute("UPDATE batch_jobs SET status_reason = ? WHERE job_id = ?",
                        (reason, job_id))

    def mark_running(self, job_id: str, started: int, ref: str) -> None:
        with self.db.transaction():
            self.db.execute(
                "UPDATE batch_jobs SET status = 'RUNNING', started_at = ?, attempt_started = ?, "
                "runtime_ref = ? WHERE job_id = ? AND status = 'STARTING'",
                (started, started, ref, job_id))
            row = self.job(job_id)
            if row is not None and row["parent_id"]:
                self._refresh_parent(str(row["parent_id"]), started)

    def end_attempt(
        self, job_id: str, attempt: dict[str, Any], status: str, reason: str | None,
        terminated: bool = False,
    ) -> None:
        """Record a finished attempt; `status` RUNNABLE means retry, else final."""
        now = now_ms()
        with self.db.transaction():
            row = self.job(job_id)
            if row is None:
                return
            attempts = loads(row["attempts"]) or []
            attempts.append(attempt)
            self.db.execute(
                "UPDATE batch_jobs SET status = ?, status_reason = ?, attempts = ?, "
                "stopped_at = ?, ce_arn = NULL, runtime_ref = NULL, "
                "terminated = terminated OR ? WHERE job_id = ?",
                (status, reason, dumps(attempts), now if status in TERMINAL else None,
                 terminated, job_id))
            if status in TERMINAL:
                self._settle([job_id], now)

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
