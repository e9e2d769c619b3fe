"""The process backend: each attempt is a local process group, argv run directly.

Each attempt gets its own session (so killpg reaches every descendant), a fresh
working directory, and RLIMIT_AS as its memory limit. No shell is involved unless
argv itself is `sh -c ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from kobako.runtime.base import AttemptSpec, OutputLine, StartError

_LINE_LIMIT = 1024 * 1024
# Server variables a job must not inherit (its credentials are not the server's).
_PRIVATE_PREFIXES = ("AWS_", "KOBAKO_")


def base_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES)}


def _limits(memory_mib: int | None) -> Callable[[], None] | None:
    if memory_mib is None:
        return None
    limit = memory_mib * 1024 * 1024

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


class ProcessAttempt:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pgid = process.pid
        self._queue: asyncio.Queue[OutputLine | None] = asyncio.Queue()
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(process.stdout, "stdout")),
            asyncio.create_task(self._pump(process.stderr, "stderr")),
        ]

    @property
    def ref(self) -> str:
        return f"pgid:{self.pgid}"

    async def _pump(self, reader: asyncio.StreamReader, name: str) -> None:
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as partial:
                    raw = partial.partial
                    if not raw:
                        return
                except asyncio.LimitOverrunError as over:
                    raw = await reader.readexactly(over.consumed)
                text = raw.decode(errors="replace").rstrip("\r\n")
                await self._queue.put(OutputLine(int(time.time() * 1000), name, text))
        finally:
            await self._queue.put(None)

    async def lines(self) -> AsyncIterator[OutputLine]:
        done = 0
        while done < len(self._readers):
            item = await self._queue.get()
            if item is None:
                done += 1
            else:
                yield item

    async def wait(self) -> int:
        code = await self.process.wait()
        # Leftover descendants (daemons, `cmd &`) die with the attempt.
        _killpg(self.pgid)
        return 128 - code if code < 0 else code

    async def kill(self) -> None:
        _killpg(self.pgid)


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class ProcessRuntime:
    """Runs attempts as local process groups and remembers them for shutdown."""

    def __init__(self) -> None:
        self._running: dict[int, ProcessAttempt] = {}

    async def start(self, spec: AttemptSpec) -> ProcessAttempt:
        if not spec.argv:
            raise StartError("CannotStartContainerError: no command given")
        spec.workdir.mkdir(parents=True, exist_ok=True)
        env = base_environment()
        env.update(spec.env)
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=spec.workdir,
                env=env,
                start_new_session=True,
                preexec_fn=_limits(spec.memory_mib),
                limit=_LINE_LIMIT,
            )
        except FileNotFoundError:
            raise StartError(
                f"CannotStartContainerError: executable file not found: {spec.argv[0]}"
            ) from None
        except PermissionError:
            raise StartError(
                f"CannotStartContainerError: permission denied: {spec.argv[0]}"
            ) from None
        except OSError as exc:
            raise StartError(f"CannotStartContainerError: {exc}") from None
        attempt = ProcessAttempt(process)
        self._running[attempt.pgid] = attempt
        process_done = asyncio.ensure_future(process.wait())
        process_done.add_done_callback(lambda _: self._running.pop(attempt.pgid, None))
        return attempt

    async def reap(self, ref: str, marker: str) -> None:
        if not ref.startswith("pgid:"):
            return
        pgid = int(ref.split(":", 1)[1])
        for member in _group_members(pgid):
            try:
                environ = Path(f"/proc/{member}/environ").read_bytes()
            except OSError:
                continue
            if marker.encode() in environ.split(b"\0"):
                _killpg(pgid)
                return

    async def close(self) -> None:
        for attempt in list(self._running.values()):
            await attempt.kill()
        self._running.clear()


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (the leader may be gone, children not)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members
