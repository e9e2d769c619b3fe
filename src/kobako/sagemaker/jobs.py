"""What SageMaker's job kinds share (`Runner`: training, processing, transform): one
asyncio task per job walking AWS's statuses (InProgress -> Completed / Failed /
Stopped, Stopping in between), the describe document persisted at each step, capacity
from the shared ledger, Stop*Job, and restart handling: jobs the database still calls
InProgress are reaped and failed, since their processes cannot be resumed.
`JobRunner` adds what processing and transform share besides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from kobako.logs.store import LogStore, Scope
from kobako.runtime.base import Attempt, AttemptSpec, OutputLine, Runtime, StartError
from kobako.s3.store import S3Store
from kobako.sagemaker.capacity import Capacity, Grant, NeverFits
from kobako.sagemaker.common import now
from kobako.sagemaker.instances import lookup
from kobako.sagemaker.logpump import pump
from kobako.sagemaker.placement import Placer
from kobako.sagemaker.store import Key, SageMakerStore

log = logging.getLogger("kobako.sagemaker")

MARKER = "KOBAKO_SAGEMAKER_JOB"
FAILURE_LIMIT = 1024


class JobFailed(Exception):
    """The job fails with this FailureReason."""


@dataclass
class Run:
    key: Key
    detail: dict[str, Any]
    task: asyncio.Task[None] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    stop_requested: bool = False
    timed_out: bool = False


RunT = TypeVar("RunT", bound=Run)


class Runner(Generic[RunT]):
    """What every SageMaker job kind's runner shares (training too): the task per job,
    Stop*Job, start-up reaping, capacity and the outcome of a run. Subclasses name their
    kind (`noun`, `kind`, `run_type`) and implement `resources` and `work`."""

    noun = ""
    kind = ""
    run_type: type[RunT]
    # The FailureReason of a job the server was killed under.
    server_died = ("InternalServerError: the kobako server stopped while the job was running; "
                   "it cannot be resumed. Please retry the job.")
    # Whether a job asked to stop ends Stopped even when it then fails (JobFailed).
    stop_hides_failure = True

    def __init__(self, store: SageMakerStore, s3: S3Store, logs: LogStore, runtime: Runtime,
                 work_root: Path, capacity: Capacity, placer: Placer | None = None) -> None:
        self.store = store
        self.s3 = s3
        self.logs = logs
        self.runtime = runtime
        self.work_root = work_root
        self.capacity = capacity
        self.placer = placer or Placer()
        self.runs: dict[Key, RunT] = {}
        self._stopping = False

    # ------------------------------------------------------------ names

    @property
    def status_key(self) -> str:
        return f"{self.noun}JobStatus"

    @property
    def arn_key(self) -> str:
        return f"{self.noun}JobArn"

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._stopping = False
        for key, detail, refs in self.store.with_status(self.kind, ("InProgress", "Stopping")):
            for ref in refs:
                await self.runtime.reap(ref, f"{MARKER}={detail[self.arn_key]}")
            if detail[self.status_key] == "Stopping":
                self._finish(detail, "Stopped")
            else:
                detail["FailureReason"] = self.server_died
                self._finish(detail, "Failed")
            self.store.update(key, detail, detail[self.status_key])
            shutil.rmtree(self.workdir(key), ignore_errors=True)

    async def stop(self) -> None:
        """Kill running jobs; the database keeps them InProgress for the next start."""
        self._stopping = True
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.runs.clear()

    def created(self, detail: dict[str, Any]) -> None:
        """Complete a new job's describe document before it is first stored."""

    def submit(self, key: Key, detail: dict[str, Any]) -> None:
        run = self.run_type(key, detail)
        self.runs[key] = run
        run.task = asyncio.create_task(self._run(run))

    def describe(self, key: Key) -> dict[str, Any] | None:
        run = self.runs.get(key)
        detail = run.detail if run is not None else self.store.get(key)
        return None if detail is None else {k: v for k, v in detail.items()
                                            if not k.startswith("_")}

    async def request_stop(self, key: Key) -> dict[str, Any] | None:
        """Stop*Job: Stopping now, Stopped once its processes are gone."""
        run = self.runs.get(key)
        if run is None:
            return None
        run.stop_requested = True
        run.detail[self.status_key] = "Stopping"
        self._stopping_now(run.detail)
        self.save(run)
        for attempt in run.attempts:
            await attempt.kill()
        return run.detail

    # ------------------------------------------------------------ one job

    def workdir(self, key: Key) -> Path:
        return self.work_root / f"{key.account}-{key.region}-{key.name}"

    def save(self, run: RunT) -> None:
        self.store.update(run.key, run.detail, run.detail[self.status_key])

    def _finish(self, detail: dict[str, Any], status: str) -> None:
        stamp = now()
        detail[self.status_key] = status
        detail[f"{self.noun}EndTime"] = stamp
        detail["LastModifiedTime"] = stamp

    def _stopping_now(self, detail: dict[str, Any]) -> None:
        """Record the Stopping status's time (the status itself is set)."""
        detail["LastModifiedTime"] = now()

    def _queued(self, run: RunT) -> None:
        """Called once if the job must wait for capacity."""

    async def _cleanup(self, run: RunT) -> None:
        """Release what the job holds besides its grant and directory."""

    def resources(self, detail: dict[str, Any]) -> tuple[str, int]:
        """(instance type, instance count) the job asks for."""
        raise NotImplementedError

    async def work(self, run: RunT, root: Path, grant: Grant) -> None:
        """Run the job with its capacity held, in directory `root`, through to its end
        status; raise JobFailed with the FailureReason."""
        raise NotImplementedError

    async def _run(self, run: RunT) -> None:
        detail = run.detail
        root = self.workdir(run.key)
        grant: Grant | None = None
        try:
            instance_type, count = self.resources(detail)
            spec = lookup(instance_type)
            assert spec is not None
            try:
                ask = self.capacity.clamp(spec.vcpus * count,
                                          int(spec.memory_gib * 1024) * count, spec.gpus * count)
            except NeverFits as error:
                raise JobFailed(str(error)) from None
            grant = await self.capacity.acquire(ask, lambda: self._queued(run))
            if run.stop_requested:
                raise asyncio.CancelledError
            await self.work(run, root, grant)
        except asyncio.CancelledError:
            for attempt in run.attempts:
                await attempt.kill()
            if self._stopping:
                raise
            self._finish(detail, "Stopped")
            self.save(run)
        except JobFailed as failed:
            if run.stop_requested and self.stop_hides_failure:
                self._finish(detail, "Stopped")
            else:
                detail["FailureReason"] = str(failed)[:FAILURE_LIMIT]
                self._finish(detail, "Failed")
            self.save(run)
        except Exception as error:
            log.exception("%s job %s failed inside kobako", self.noun, run.key.name)
            detail["FailureReason"] = f"InternalServerError: {error}"[:FAILURE_LIMIT]
            self._finish(detail, "Failed")
            self.save(run)
        finally:
            await self._cleanup(run)
            if grant is not None:
                await self.capacity.release(grant)
            if not self._stopping:
                self.runs.pop(run.key, None)
                shutil.rmtree(root, ignore_errors=True)


class JobRunner(Runner[Run]):
    """Processing and transform: subclasses implement `resources` and `execute`."""

    run_type = Run
    log_group = ""

    async def execute(self, run: Run, root: Path, grant: Grant) -> None:
        """Do the job; raise JobFailed with the FailureReason."""
        raise NotImplementedError

    async def work(self, run: Run, root: Path, grant: Grant) -> None:
        run.detail[f"{self.noun}StartTime"] = now()
        self.save(run)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        await self.execute(run, root, grant)
        self._finish(run.detail, "Stopped" if run.stop_requested or run.timed_out
                     else "Completed")
        self.save(run)

    async def run_attempt(self, run: Run, spec: AttemptSpec, stream: str,
                          limit: float | None = None,
                          on_line: Callable[[OutputLine], None] | None = None) -> int:
        """Start one process or container, copy its output to the job's log stream,
        and return its exit code (killed past `limit` seconds, marking the run)."""
        try:
            attempt = await self.runtime.start(spec)
        except StartError as error:
            raise JobFailed(f"ClientError: {error.reason}") from None
        run.attempts.append(attempt)
        self.store.set_refs(run.key, [a.ref for a in run.attempts])
        if run.stop_requested:
            await attempt.kill()
        scope = Scope(run.key.account, run.key.region)
        pumping = asyncio.create_task(pump(attempt, self.logs, scope, self.log_group,
                                           f"{run.key.name}/{stream}", on_line))
        try:
            if limit is None:
                code = await attempt.wait()
            else:
                code = await asyncio.wait_for(asyncio.shield(attempt.wait()), limit)
        except TimeoutError:
            run.timed_out = True
            await attempt.kill()
            code = await attempt.wait()
        await pumping
        return code


def stream_name(host: str = "algo-1") -> str:
    return f"{host}-{int(time.time())}"
