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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kobako.batch.common import loads, now_ms
from kobako.batch.store import BatchStore
from kobako.logs.store import LogStore, Scope
from kobako.runtime.base import Attempt, AttemptSpec, Runtime, StartError
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


@dataclass
class Host:
    """What this machine can give jobs at once."""

    cpus: float
    memory_mib: int
    gpus: int = 0

    @classmethod
    def detect(cls) -> Host:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
        gpus = len([p for p in Path("/dev").glob("nvidia[0-9]*")])
        return cls(float(cpus), int(memory), gpus)


@dataclass
class Running:
    """An attempt this process owns, and the capacity it holds."""

    job_id: str
    ce_arn: str
    vcpus: float
    memory: int
    gpus: int
    task: asyncio.Task[None] | None = None
    attempt: Attempt | None = None
    stop_reason: str | None = None
    timed_out: bool = False


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

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._wake = asyncio.Event()
        await self.recover()
        self._stopping = False
        self._loop_task = asyncio.create_task(self._loop())
        self.wake()

    async def stop(self) -> None:
        """Stop scheduling and kill running process groups; the DB keeps them in flight,
        so the next start records those attempts as interrupted."""
        self._stopping = True
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

    def wake(self) -> None:
        self._wake.set()

    async def recover(self) -> None:
        for row in self.store.in_flight():
            job_id = str(row["job_id"])
            if row["runtime_ref"]:
                await self.runtime.reap(str(row["runtime_ref"]), f"AWS_BATCH_JOB_ID={job_id}")
            detail = loads(row["detail"])
            started = row["attempt_started"] or row["started_at"] or now_ms()
            self._record(row, detail, None, SERVER_DIED, SERVER_DIED, int(started))
            shutil.rmtree(self.work_root / job_id.replace(":", "_"), ignore_errors=True)

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

    def _capacity(self) -> tuple[dict[str, float], float, int, int]:
        per_ce: dict[str, float] = {}
        for r in self.running.values():
            per_ce[r.ce_arn] = per_ce.get(r.ce_arn, 0.0) + r.vcpus
        return (per_ce, sum(r.vcpus for r in self.running.values()),
                sum(r.memory for r in self.running.values()),
                sum(r.gpus for r in self.running.values()))

    def _schedule(self) -> None:
        db = self.store.db
        ces = {str(r["arn"]): r for r in db.query(
            "SELECT arn, state, max_vcpus FROM batch_compute_envs")}
        per_ce, cpus, memory, gpus = self._capacity()
        assignments: list[tuple[str, str]] = []
        blocked: list[tuple[str, str | None, str | None]] = []
        with db.transaction():
            for job in self.store.runnable(1000):
                need_cpu = float(job["vcpus"])
                need_mem = int(job["memory"] or 0)
                need_gpu = int(job["gpus"])
                order = [ces[a] for a in loads(job["ce_order"]) if a in ces]
                reason = self._never_fits(order, need_cpu, need_mem, need_gpu)
                if reason is not None:
                    blocked.append((str(job["job_id"]), job["status_reason"], reason))
                    continue
                if cpus + need_cpu > self.host.cpus or memory + need_mem > self.host.memory_mib \
                        or gpus + need_gpu > self.host.gpus:
                    continue
                for ce in order:
                    if ce["state"] != "ENABLED":
                        continue
                    limit = ce["max_vcpus"]
                    used = per_ce.get(str(ce["arn"]), 0.0)
                    if limit is not None and used + need_cpu > float(limit):
                        continue
                    per_ce[str(ce["arn"])] = used + need_cpu
                    cpus += need_cpu
                    memory += need_mem
                    gpus += need_gpu
                    assignments.append((str(job["job_id"]), str(ce["arn"])))
                    break
            for job_id, old, new in blocked:
                if old != new:
                    self.store.set_reason(job_id, new)
            claimed = self.store.claim(assignments)
        for row in claimed:
            running = Running(str(row["job_id"]), str(row["ce_arn"]), float(row["vcpus"]),
                              int(row["memory"] or 0), int(row["gpus"]))
            self.running[running.job_id] = running
            running.task = asyncio.create_task(self._run(row, running))

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
        workdir = self.work_root / job_id.replace(":", "_") / str(len(attempts) + 1)
        shutil.rmtree(workdir, ignore_errors=True)
        spec = AttemptSpec(argv=list(container.get("command") or []), env=env, workdir=workdir,
                           vcpus=running.vcpus, memory_mib=int(row["memory"]) if row["memory"]
                           else None, gpus=running.gpus, image=container.get("image"))
        started = now_ms()
        try:
            try:
                attempt = await self.runtime.start(spec)
            except StartError as error:
                self._record(row, detail, None, error.reason, START_FAILED, started)
                return
            running.attempt = attempt
            if running.stop_reason is not None:
                await attempt.kill()
            self.store.mark_running(job_id, started, attempt.ref)
            stream = f"{detail['jobDefinitionName']}/default/{job_id}"
            pump = asyncio.create_task(self._pump(attempt, Scope(row["account"], row["region"]),
                                                  stream))
            code = await self._wait(attempt, detail, running)
            await pump
            if running.stop_reason is not None:
                self._record(row, detail, code, None, running.stop_reason, started, final=True,
                             terminated=True)
            elif running.timed_out:
                self._record(row, detail, code, None, TIMED_OUT, started)
            else:
                self._record(row, detail, code, None, EXITED, started)
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
                shutil.rmtree(workdir, ignore_errors=True)
                self.wake()

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
        pending: asyncio.Task[Any] | None = None
        while True:
            if pending is None:
                pending = asyncio.ensure_future(lines.__anext__())
            if batch:
                done, _ = await asyncio.wait({pending}, timeout=0.05)
                if not done:
                    self.logs.append(scope, LOG_GROUP, stream, batch)
                    batch = []
                    continue
            try:
                line = await pending
            except StopAsyncIteration:
                break
            pending = None
            batch.append((line.timestamp_ms, line.text))
            if len(batch) >= 500:
                self.logs.append(scope, LOG_GROUP, stream, batch)
                batch = []
        if batch:
            self.logs.append(scope, LOG_GROUP, stream, batch)

    def _record(self, row: Row, detail: dict[str, Any], code: int | None, reason: str | None,
                status_reason: str, started: int, final: bool = False,
                terminated: bool = False) -> None:
        job_id = str(row["job_id"])
        container: dict[str, Any] = {
            "logStreamName": f"{detail['jobDefinitionName']}/default/{job_id}",
            "taskArn": f"arn:aws:ecs:{row['region']}:{row['account']}:task/kobako/"
                       f"{job_id.replace(':', '-')}",
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
        self.store.end_attempt(job_id, attempt, status, status_reason, terminated)

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
