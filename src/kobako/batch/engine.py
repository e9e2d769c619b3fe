"""The Batch engine: picks RUNNABLE jobs that fit, runs their attempts, records results.

Event-driven: `wake()` (on submit, finish, queue or CE change) sets an event the
scheduler loop waits on, so a trivial job reaches RUNNING within milliseconds. A claim
is one short BEGIN IMMEDIATE transaction (select candidates, one UPDATE ... RETURNING);
no write transaction is held while an attempt runs. After a crash, `start()` turns the
attempts the database still calls STARTING/RUNNING into failed attempts, retried or
failed per the job's retry strategy.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kobako.batch import gpus as gpu_discovery
from kobako.batch.common import dumps, loads, now_ms
from kobako.batch.fairshare import DISPATCH_CHARGE_S, Policy, ShareUsage
from kobako.batch.store import BatchStore, Ended
from kobako.batch.workdirs import WorkdirPool
from kobako.logs.store import LogStore, Scope
from kobako.runtime.base import Attempt, AttemptSpec, Runtime, StartError, exit_reason
from kobako.store.db import Row

log = logging.getLogger("kobako.batch")

LOG_GROUP = "/aws/batch/job"
EXITED = "Essential container in task exited"
TIMED_OUT = "Job attempt duration exceeded timeout"
START_FAILED = "Task failed to start"
SERVER_DIED = ("Host EC2 (instance kobako) terminated: the kobako server stopped while the "
               "attempt was running")
NEVER_FITS = ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement "
              "(vCPU/memory/GPU) is higher than that can be met by the CE(s) attached to the "
              "job queue.")


# At most how long a started attempt waits to be written as RUNNING when no other
# pass comes first (each pass writes all transitions gathered since the last one).
STARTED_WRITE_S = 0.01

# How many RUNNABLE jobs a scheduling pass looks at per queue (or per share): a
# window, so that a pass costs the same with ten or ten thousand jobs waiting.
WINDOW = 256


@dataclass
class Host:
    """What this machine can give jobs at once; `gpu_ids` are the device indices handed
    out (default: 0..gpus-1)."""

    cpus: float
    memory_mib: int
    gpus: int = 0
    gpu_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.gpu_ids:
            self.gpu_ids = tuple(str(i) for i in range(self.gpus))
        self.gpus = len(self.gpu_ids)

    @classmethod
    def detect(cls) -> Host:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
        found = gpu_discovery.discover()
        return cls(float(cpus), int(memory), len(found), tuple(g.index for g in found))


@dataclass
class Running:
    """An attempt this process owns, and the capacity it holds."""

    job_id: str
    ce_arn: str
    vcpus: float
    memory: int
    gpus: int
    task: asyncio.Task[None] | None = None
    queue_arn: str = ""
    share: str | None = None
    gpu_ids: tuple[str, ...] = ()
    started_s: float = 0.0
    attempt: Attempt | None = None
    stop_reason: str | None = None
    timed_out: bool = False
    # A multi-node job's node attempts (node job id -> attempt): stopped together.
    nodes: dict[str, Attempt] = field(default_factory=dict)


@dataclass
class Outcome:
    status: str
    reason: str


def should_retry(strategy: dict[str, Any] | None, attempts_made: int, exit_code: int | None,
                 reason: str, status_reason: str) -> bool:
    """AWS's rule: the first evaluateOnExit match decides; no match means retry."""
    strategy = strategy or {}
    if attempts_made >= int(strategy.get("attempts") or 1):
        return False
    code = "" if exit_code is None else str(exit_code)
    for rule in strategy.get("evaluateOnExit") or []:
        checks = [(rule.get("onExitCode"), code), (rule.get("onReason"), reason),
                  (rule.get("onStatusReason"), status_reason)]
        if all(pattern is None or fnmatch.fnmatchcase(value, str(pattern))
               for pattern, value in checks):
            return str(rule.get("action", "")).upper() == "RETRY"
    return True


@dataclass
class Engine:
    store: BatchStore
    runtime: Runtime
    logs: LogStore
    work_root: Path
    host: Host = field(default_factory=Host.detect)
    running: dict[str, Running] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        # Attempt transitions waiting for the next pass's one transaction.
        self._started: list[tuple[str, int, str, str | None]] = []
        self._ended: list[Ended] = []
        self.usage = ShareUsage()
        self._decay: dict[str, float] = {}
        # During a pass: job id -> (queue, share, GPU ids, vCPUs) of jobs being claimed,
        # and whether the job the candidate generator last yielded was taken.
        self._claiming: dict[str, tuple[str, str | None, tuple[str, ...], float]] = {}
        self._taken = False
        self._config: tuple[dict[str, Row], list[Row], dict[str, Policy]] | None = None
        self._workdirs = WorkdirPool(self.work_root)
        self._never_fits_seen = False
        self._later: asyncio.TimerHandle | None = None
        self._choices: dict[str, tuple[str | None, dict[str, str]]] = {}

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._wake = asyncio.Event()
        await self.recover()
        self._workdirs.reset()
        self._load_policies()
        self.usage.rebuild(self.store, self._decay)
        self._stopping = False
        self._loop_task = asyncio.create_task(self._loop())
        self.wake()

    async def stop(self) -> None:
        """Stop scheduling and kill running process groups; the DB keeps them in flight,
        so the next start records those attempts as interrupted."""
        self._stopping = True
        if self._later is not None:
            self._later.cancel()
            self._later = None
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        tasks = [r.task for r in self.running.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.runtime.close()
        self.running.clear()
        self._flush()

    def wake(self) -> None:
        self._wake.set()

    def _wake_later(self) -> None:
        if self._later is None:
            self._later = asyncio.get_running_loop().call_later(STARTED_WRITE_S, self._woken)

    def _woken(self) -> None:
        self._later = None
        self.wake()

    async def recover(self) -> None:
        for row in self.store.in_flight():
            job_id = str(row["job_id"])
            if row["runtime_ref"]:
                await self.runtime.reap(str(row["runtime_ref"]), f"AWS_BATCH_JOB_ID={job_id}")
            if row["node_index"] is not None:
                continue  # recorded with its multi-node parent
            if row["num_nodes"] is not None:
                from kobako.batch.gang import record_died
                record_died(self, row, SERVER_DIED)
                continue
            detail = loads(row["detail"])
            started = row["attempt_started"] or row["started_at"] or now_ms()
            self._record(row, detail, None, SERVER_DIED, SERVER_DIED, int(started))
            shutil.rmtree(self.work_root / job_id.replace(":", "_"), ignore_errors=True)
        self._flush()

    # ------------------------------------------------------------ scheduling

    async def _loop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._schedule()
            except Exception:
                log.exception("batch scheduler pass failed")
                await asyncio.sleep(0.5)
                self.wake()

    def _flush(self) -> None:
        """Write the attempts started and ended since the last pass, in one transaction."""
        started, ended = self._take_transitions()
        self.store.apply(started, ended)

    def _take_transitions(self) -> tuple[list[tuple[str, int, str, str | None]], list[Ended]]:
        """What the pass writes; the delayed pass for started attempts is not needed
        any more."""
        if self._later is not None:
            self._later.cancel()
            self._later = None
        started, ended = self._started, self._ended
        self._started, self._ended = [], []
        return started, ended

    def _capacity(self) -> tuple[dict[str, float], float, int, list[str]]:
        per_ce: dict[str, float] = {}
        taken: set[str] = set()
        for r in self.running.values():
            per_ce[r.ce_arn] = per_ce.get(r.ce_arn, 0.0) + r.vcpus
            taken.update(r.gpu_ids)
        return (per_ce, sum(r.vcpus for r in self.running.values()),
                sum(r.memory for r in self.running.values()),
                [g for g in self.host.gpu_ids if g not in taken])

    def _load_policies(self) -> dict[str, Policy]:
        """Each fair-share queue's policy (by queue ARN)."""
        policies: dict[str, Policy] = {}
        for row in self.store.db.query(
                "SELECT q.arn, p.spec FROM batch_queues q JOIN batch_sched_policies p "
                "ON p.arn = q.spec ->> '$.schedulingPolicyArn'"):
            policies[str(row["arn"])] = Policy.parse(loads(row["spec"]))
        self._decay = {q: p.decay_s for q, p in policies.items()}
        return policies

    def _candidates(self, queue: str, policy: Policy | None, now_s: float) -> Iterator[Row]:
        """RUNNABLE jobs in dispatch order: FIFO, or fair share (lowest usage x weight
        first; within a share, highest schedulingPriority, then oldest)."""
        if policy is None:
            yield from _pages(lambda after, size: self.store.runnable(queue, size, after))
            return

        def share_pages(share: str) -> Iterator[Row]:
            return _pages(lambda after, size: self.store.runnable_in_share(
                queue, share, size, after))

        heads: dict[str, Iterator[Row]] = {
            share: share_pages(share) for share in self.store.runnable_shares(queue)}
        positions = dict.fromkeys(heads, 0)
        while positions:
            def key(share: str) -> tuple[float, float, str]:
                weight = policy.weight(share)
                running = sum(r.vcpus for r in self.running.values()
                              if r.queue_arn == queue and r.share == share)
                used = self.usage.value(queue, share, policy.decay_s, now_s, running)
                return (used * weight, weight, share)

            share = min(positions, key=key)
            row = next(heads[share], None)
            if row is None:
                del positions[share]
                continue
            self._taken = self._never_fits_seen = False
            yield row
            if not self._taken and not self._never_fits_seen:
                # The share's best job does not fit now: keep its order, try the others.
                del positions[share]

    def changed(self) -> None:
        """Compute environments, queues or scheduling policies changed: re-read them."""
        self._config = None
        self._choices.clear()
        self.wake()

    def _load_config(self) -> tuple[dict[str, Row], list[Row], dict[str, Policy]]:
        if self._config is None:
            db = self.store.db
            ces = {str(r["arn"]): r for r in db.query(
                "SELECT arn, state, max_vcpus FROM batch_compute_envs")}
            queues = db.query("SELECT arn, ce_order FROM batch_queues WHERE state = 'ENABLED' "
                              "ORDER BY priority DESC, created")
            self._config = (ces, queues, self._load_policies())
        return self._config

    def _schedule(self) -> None:
        """One pass, one transaction: record what started and ended since the last pass,
        then claim what fits now. A pass with nothing to record chooses with plain reads
        and opens a transaction only if it claims (or marks) a job: the claim's UPDATE
        checks the job is still RUNNABLE."""
        db = self.store.db
        per_ce, cpus, memory, free_gpus = self._capacity()
        if cpus >= self.host.cpus:
            self._flush()
            return
        ces, queues, policies = self._load_config()
        now_s = now_ms() / 1000
        assignments: list[tuple[str, str, str | None]] = []
        self._claiming = {}
        blocked: list[tuple[str, str | None, str | None]] = []
        started, ended = self._take_transitions()
        writing = bool(started or ended)
        claimed: list[Row] = []
        with db.transaction() if writing else contextlib.nullcontext():
            self.store.apply(started, ended, in_transaction=True)
            for queue in queues:
                queue_arn = str(queue["arn"])
                order = [ces[a] for a in loads(queue["ce_order"]) if a in ces]
                policy = policies.get(queue_arn)
                limit = self._queue_limit(queue_arn, policy, order)
                for job in self._candidates(queue_arn, policy, now_s):
                    if cpus >= self.host.cpus:
                        break
                    need_cpu = float(job["vcpus"])
                    need_mem = int(job["memory"] or 0)
                    need_gpu = int(job["gpus"])
                    reason = self._never_fits(order, need_cpu, need_mem, need_gpu)
                    if reason is not None:
                        blocked.append((str(job["job_id"]), job["status_reason"], reason))
                        self._never_fits_seen = True
                        continue
                    if cpus + need_cpu > self.host.cpus or memory + need_mem > \
                            self.host.memory_mib or need_gpu > len(free_gpus):
                        continue
                    if limit is not None and job["share"] is not None and \
                            self._share_active(queue_arn, str(job["share"])) and \
                            self._queue_vcpus(queue_arn) + need_cpu > limit:
                        continue
                    for ce in order:
                        if ce["state"] != "ENABLED":
                            continue
                        ce_limit = ce["max_vcpus"]
                        used = per_ce.get(str(ce["arn"]), 0.0)
                        if ce_limit is not None and used + need_cpu > float(ce_limit):
                            continue
                        per_ce[str(ce["arn"])] = used + need_cpu
                        cpus += need_cpu
                        memory += need_mem
                        gpu_ids = tuple(free_gpus[:need_gpu])
                        del free_gpus[:need_gpu]
                        share = None if job["share"] is None else str(job["share"])
                        self._claiming[str(job["job_id"])] = (queue_arn, share, gpu_ids,
                                                              need_cpu)
                        self._taken = True
                        assignments.append((str(job["job_id"]), str(ce["arn"]),
                                            dumps(list(gpu_ids)) if gpu_ids else None))
                        if policy is not None and share is not None:
                            self.usage.charge(queue_arn, share, need_cpu * DISPATCH_CHARGE_S,
                                              policy.decay_s, now_s)
                        break
            reasons = [(job_id, new) for job_id, old, new in blocked if old != new]
            if writing:
                claimed = self._write_claims(reasons, assignments)
        if not writing and (reasons or assignments):
            with db.transaction():
                claimed = self._write_claims(reasons, assignments)
        claiming, self._claiming = self._claiming, {}
        for row in claimed:
            queue_arn, share, gpu_ids, _ = claiming[str(row["job_id"])]
            running = Running(str(row["job_id"]), str(row["ce_arn"]), float(row["vcpus"]),
                              int(row["memory"] or 0), int(row["gpus"]), queue_arn=queue_arn,
                              share=share, gpu_ids=gpu_ids, started_s=now_s)
            self.running[running.job_id] = running
            running.task = asyncio.create_task(self._run(row, running))

    def _write_claims(self, reasons: list[tuple[str, str | None]],
                      assignments: list[tuple[str, str, str | None]]) -> list[Row]:
        for job_id, reason in reasons:
            self.store.set_reason(job_id, reason)
        return self.store.claim(assignments)

    def _queue_limit(self, queue: str, policy: Policy | None, order: list[Row]
                     ) -> float | None:
        """vCPUs that shares already running may hold (computeReservation keeps the rest
        for share identifiers not yet active); None when nothing is reserved."""
        if policy is None or not policy.reservation:
            return None
        limits = [float(ce["max_vcpus"]) for ce in order if ce["max_vcpus"] is not None]
        capacity = min(self.host.cpus, sum(limits)) if limits else self.host.cpus
        active = len({r.share for r in self.running.values()
                      if r.queue_arn == queue and r.share is not None}
                     | {c[1] for c in self._claiming.values() if c[0] == queue})
        return capacity * policy.usable_fraction(active)

    def _share_active(self, queue: str, share: str) -> bool:
        return any(r.queue_arn == queue and r.share == share for r in self.running.values()) \
            or any(c[0] == queue and c[1] == share for c in self._claiming.values())

    def _queue_vcpus(self, queue: str) -> float:
        return sum(r.vcpus for r in self.running.values() if r.queue_arn == queue) + sum(
            c[3] for c in self._claiming.values() if c[0] == queue)

    def _never_fits(self, order: list[Row], cpu: float, mem: int, gpu: int) -> str | None:
        if cpu > self.host.cpus or mem > self.host.memory_mib or gpu > self.host.gpus:
            return (f"{NEVER_FITS} (this kobako host has {self.host.cpus:g} vCPUs, "
                    f"{self.host.memory_mib} MiB, {self.host.gpus} GPUs; the job needs {cpu:g} "
                    f"vCPUs, {mem} MiB, {gpu} GPUs)")
        limits = [ce["max_vcpus"] for ce in order]
        if not order or all(limit is not None and cpu > float(limit) for limit in limits):
            return f"{NEVER_FITS} (the job needs {cpu:g} vCPUs)"
        return None

    # ------------------------------------------------------------ attempts

    async def _run(self, row: Row, running: Running) -> None:
        if row["num_nodes"] is not None:
            from kobako.batch.gang import run_gang  # engine <-> gang: imported when used
            await run_gang(self, row, running)
            return
        job_id = running.job_id
        detail: dict[str, Any] = loads(row["detail"])
        attempts = loads(row["attempts"]) or []
        container = detail["container"]
        env = {e["name"]: e.get("value", "") for e in container.get("environment") or []}
        queue_name = str(row["queue_arn"]).rsplit("/", 1)[-1]
        env.update({
            "AWS_BATCH_JOB_ID": job_id,
            "AWS_BATCH_JOB_ATTEMPT": str(len(attempts) + 1),
            "AWS_BATCH_JQ_NAME": queue_name,
            "AWS_BATCH_CE_NAME": running.ce_arn.rsplit("/", 1)[-1],
        })
        if row["array_size"]:
            env["AWS_BATCH_JOB_ARRAY_SIZE"] = str(row["array_size"])
        if row["array_index"] is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(row["array_index"])
        env.update(gpu_environment(self.host, running.gpu_ids))
        workdir = self._workdirs.take()
        spec = AttemptSpec(argv=list(container.get("command") or []), env=env, workdir=workdir,
                           vcpus=running.vcpus, memory_mib=int(row["memory"]) if row["memory"]
                           else None, gpus=running.gpus, image=container.get("image"),
                           properties=container, gpu_ids=running.gpu_ids,
                           **self._runtime_choice(running.ce_arn))
        started = now_ms()
        try:
            try:
                attempt = await self.runtime.start(spec)
            except StartError as error:
                # The runtime's reason ("CannotPullContainerError: ...") is what AWS
                # shows as the job's statusReason too.
                self._record(row, detail, None, error.reason, error.reason or START_FAILED,
                             started)
                return
            running.attempt = attempt
            if running.stop_reason is not None:
                await attempt.kill()
            # Written with the next pass's other transitions, in one transaction: the
            # next submit or finish brings one soon; if none does, a pass comes at the
            # latest STARTED_WRITE_S later (the job's startedAt is the spawn time anyway).
            self._started.append((job_id, started, attempt.ref, row["parent_id"]))
            self._wake_later()
            stream = f"{detail['jobDefinitionName']}/default/{job_id}"
            scope = Scope(row["account"], row["region"])
            if (detail.get("timeout") or {}).get("attemptDurationSeconds") is None:
                # No timeout to watch: read the output to its end, then the exit code
                # (by then known): fewer event-loop hops for a short job.
                await self._pump(attempt, scope, stream)
                code = await self._wait(attempt, detail, running)
            else:
                pump = asyncio.create_task(self._pump(attempt, scope, stream))
                code = await self._wait(attempt, detail, running)
                await pump
            if running.stop_reason is not None:
                self._record(row, detail, code, None, running.stop_reason, started, final=True,
                             terminated=True)
            elif running.timed_out:
                self._record(row, detail, code, None, TIMED_OUT, started)
            else:
                self._record(row, detail, code, exit_reason(attempt), EXITED, started)
        except asyncio.CancelledError:
            if running.attempt is not None:
                await running.attempt.kill()
            raise
        except Exception:
            log.exception("batch attempt of %s failed", job_id)
            self._record(row, detail, None, "kobako internal error", START_FAILED, started)
        finally:
            if not self._stopping:
                self.running.pop(job_id, None)
                self._workdirs.give(workdir)
                self._pass_now()

    def _pass_now(self) -> None:
        """Record and refill right away when an attempt ends, rather than a loop hop
        later (the pass is synchronous, so it never interleaves with another)."""
        try:
            self._schedule()
        except Exception:
            log.exception("batch scheduler pass failed")
            self.wake()

    def _runtime_choice(self, ce_arn: str) -> dict[str, Any]:
        """The CE's tags pick its backend (kobako:runtime) and OCI runtime
        (kobako:oci-runtime); untagged CEs use the configured default. Kept until
        `changed()` (tagging a compute environment calls it)."""
        choice = self._choices.get(ce_arn)
        if choice is None:
            tags = self.store.tags(ce_arn)
            options = {"oci_runtime": tags["kobako:oci-runtime"]} if tags.get(
                "kobako:oci-runtime") else {}
            choice = self._choices[ce_arn] = (tags.get("kobako:runtime"), options)
        return {"runtime": choice[0], "options": dict(choice[1])}

    async def _wait(self, attempt: Attempt, detail: dict[str, Any], running: Running) -> int:
        seconds = (detail.get("timeout") or {}).get("attemptDurationSeconds")
        if seconds is None:
            return await attempt.wait()
        try:
            return await asyncio.wait_for(asyncio.shield(attempt.wait()), float(seconds))
        except TimeoutError:
            running.timed_out = True
            await attempt.kill()
            return await attempt.wait()

    async def _pump(self, attempt: Attempt, scope: Scope, stream: str) -> None:
        """Copy output lines to Logs, batching whatever has arrived since the last write."""
        batch: list[tuple[int, str]] = []
        lines = attempt.lines().__aiter__()
        pending: asyncio.Future[Any] | None = None
        while True:
            try:
                if pending is None and not batch:
                    # Nothing to flush: wait for the next line directly (no task).
                    line = await lines.__anext__()
                else:
                    if pending is None:
                        pending = asyncio.ensure_future(lines.__anext__())
                    done, _ = await asyncio.wait({pending}, timeout=0.05)
                    if not done:
                        self.logs.append(scope, LOG_GROUP, stream, batch)
                        batch = []
                        continue
                    line, pending = pending.result(), None
            except StopAsyncIteration:
                break
            batch.append((line.timestamp_ms, line.text))
            if len(batch) >= 500:
                self.logs.append(scope, LOG_GROUP, stream, batch)
                batch = []
        if batch:
            self.logs.append(scope, LOG_GROUP, stream, batch)

    def _record(self, row: Row, detail: dict[str, Any], code: int | None, reason: str | None,
                status_reason: str, started: int, final: bool = False,
                terminated: bool = False, task_of: str | None = None) -> str:
        """Queue the attempt's end for the next pass; the job's new status. `task_of`:
        the job whose log stream and task the attempt shows (a multi-node job's main
        node)."""
        job_id = str(row["job_id"])
        task_job = task_of or job_id
        container: dict[str, Any] = {
            "logStreamName": f"{detail['jobDefinitionName']}/default/{task_job}",
            "taskArn": f"arn:aws:ecs:{row['region']}:{row['account']}:task/kobako/"
                       f"{task_job.replace(':', '-').replace('#', '-')}",
        }
        if code is not None:
            container["exitCode"] = code
        if reason:
            container["reason"] = reason
        attempt = {"container": container, "startedAt": started, "stoppedAt": now_ms(),
                   "statusReason": status_reason}
        made = len(loads(row["attempts"]) or []) + 1
        if code == 0 and not final:
            status = "SUCCEEDED"
        elif not final and should_retry(detail.get("retryStrategy"), made, code, reason or "",
                                        status_reason):
            status = "RUNNABLE"
        else:
            status = "FAILED"
        running = self.running.get(job_id)
        if running is not None and running.share is not None:
            decay = self._decay.get(running.queue_arn, 0.0)
            extra = now_ms() / 1000 - running.started_s - DISPATCH_CHARGE_S
            self.usage.charge(running.queue_arn, running.share, running.vcpus * extra, decay,
                              now_ms() / 1000)
        attempts = [*(loads(row["attempts"]) or []), attempt]
        # Written by the pass that `_run` runs when it ends (or by recover's or stop's
        # flush), not by a pass of its own.
        self._ended.append(Ended(job_id, attempts, status, status_reason, terminated,
                                 nodes_again=status == "RUNNABLE"
                                 and row["num_nodes"] is not None))
        return status

    # ------------------------------------------------------------ other holders

    def hold(self, owner: str, vcpus: float, memory_mib: int, gpus: int
             ) -> tuple[str, ...] | None:
        """Take capacity for work Batch does not run (SageMaker jobs) in this same
        ledger, so the two never oversubscribe the host together; the GPU ids given, or
        None if it does not fit now. `owner` must not look like a Batch job id."""
        _, cpus, memory, free_gpus = self._capacity()
        if owner in self.running or cpus + vcpus > self.host.cpus or \
                memory + memory_mib > self.host.memory_mib or gpus > len(free_gpus):
            return None
        ids = tuple(free_gpus[:gpus])
        self.running[owner] = Running(owner, "", vcpus, memory_mib, gpus, gpu_ids=ids)
        return ids

    def unhold(self, owner: str) -> None:
        """Give back what `hold` took; Batch may use it at once."""
        if self.running.pop(owner, None) is not None:
            self.wake()

    # ------------------------------------------------------------ terminate

    async def terminate(self, job_ids: list[str], reason: str) -> None:
        """Kill running attempts (no retry); waiting jobs are failed by the caller."""
        for job_id in job_ids:
            running = self.running.get(job_id)
            if running is None:
                continue
            running.stop_reason = reason
            if running.attempt is not None:
                await running.attempt.kill()
            for attempt in list(running.nodes.values()):
                await attempt.kill()


def _pages(fetch: Callable[[Row | None, int], list[Row]]) -> Iterator[Row]:
    """Rows a page at a time, small pages first: a pass usually needs only a few jobs,
    and stops reading when the host is full. At most WINDOW rows."""
    after: Row | None = None
    size, seen = 4, 0
    while seen < WINDOW:
        rows = fetch(after, size)
        yield from rows
        if len(rows) < size:
            return
        after, seen = rows[-1], seen + len(rows)
        size = min(size * 4, WINDOW - seen)


def gpu_environment(host: Host, gpu_ids: tuple[str, ...]) -> dict[str, str]:
    """What a job on a GPU host sees: its own devices only (none without GPU=n), in
    nvidia-smi's order so that index N is the same device for CUDA and for nvidia-smi."""
    if not host.gpus:
        return {}
    if not gpu_ids:
        return {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}
    ids = ",".join(gpu_ids)
    return {"CUDA_VISIBLE_DEVICES": ids, "NVIDIA_VISIBLE_DEVICES": ids,
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}

