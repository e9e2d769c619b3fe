"""The one interface Batch (and later ECS, SageMaker, Ray) runs work through.

Kept tiny on purpose so that process, container and Ray backends plug in alike: start
an attempt, read its output lines, wait for its exit code, kill it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class AttemptSpec:
    """What to run: argv (never through a shell unless argv says so), where, with what."""

    argv: list[str]
    env: dict[str, str]
    workdir: Path
    vcpus: float = 1.0
    memory_mib: int | None = None
    gpus: int = 0
    image: str | None = None
    # Which backend runs it ("process", "container"); None means the configured default.
    runtime: str | None = None
    # Backend options a compute environment may pin, e.g. {"oci_runtime": "runc"}; and
    # "job_id", the container's job label when it is not AWS_BATCH_JOB_ID (SageMaker);
    # "network" (a name from `Networks.create_network`), "network_aliases" (comma
    # separated names the other attempts on it resolve) and "hostname" (container only).
    options: Mapping[str, str] = field(default_factory=dict)
    # The job's resolved containerProperties (volumes, mountPoints, linuxParameters,
    # ulimits, user, ...): the process backend ignores them, the container one honours them.
    properties: Mapping[str, Any] = field(default_factory=dict)
    # GPU device ids the scheduler assigned (empty: any `gpus` devices).
    gpu_ids: tuple[str, ...] = ()
    # (host directory, path) pairs the process backend bind-mounts, in order, in the
    # attempt's private mount namespace, e.g. the job directory at /opt/ml; where it may
    # not (not root), it runs the attempt without them. The container backend ignores
    # them: its mounts come from `properties`.
    binds: tuple[tuple[Path, str], ...] = ()


@dataclass(frozen=True)
class OutputLine:
    timestamp_ms: int
    stream: str  # "stdout" or "stderr"
    text: str


class StartError(Exception):
    """The attempt could not start (no such executable, bad image); `reason` is for users."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Attempt(Protocol):
    """One running attempt."""

    @property
    def ref(self) -> str:
        """A durable handle (a process group id, a container id) to reap it after a crash."""
        ...

    def lines(self) -> AsyncIterator[OutputLine]: ...

    async def wait(self) -> int:
        """The exit code; 128 + N for death by signal N, as container runtimes report."""
        ...

    async def kill(self) -> None: ...


def exit_reason(attempt: Attempt) -> str | None:
    """Why the attempt ended, when the backend knows better than its exit code (e.g.
    'OutOfMemoryError: ...'); an optional `exit_reason` attribute, so that simple
    backends and test doubles need not declare it."""
    reason = getattr(attempt, "exit_reason", None)
    return reason if isinstance(reason, str) else None


class Runtime(Protocol):
    async def start(self, spec: AttemptSpec) -> Attempt: ...

    async def reap(self, ref: str, marker: str) -> None:
        """Kill what an attempt left behind when the server died, if `marker` proves it ours."""
        ...

    async def close(self) -> None:
        """Kill everything still running (server shutdown)."""
        ...


@runtime_checkable
class Networks(Protocol):
    """A backend that gives one job's attempts a private network on which they resolve
    each other by name (the hosts algo-1..N of a multi-instance SageMaker job)."""

    async def create_network(self, job_id: str) -> str:
        """The new network's name (for AttemptSpec.options["network"]); its durable ref,
        for `Runtime.reap` after a crash, is `network:<name>`. Raises StartError."""
        ...

    async def remove_network(self, name: str, job_id: str) -> None:
        """Remove the network, and whatever of the job is still attached to it, if it is
        `job_id`'s; nothing if it is gone."""
        ...
