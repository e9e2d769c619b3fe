"""The process backend: each attempt is a local process group, argv run directly.

Each attempt gets its own session (so killpg reaches every descendant), a fresh
working directory, and RLIMIT_AS as its memory limit (not for GPU jobs: CUDA maps
huge address ranges). No shell is involved unless
argv itself is `sh -c ...`.

Spawning is the hot path of a trivial job, so it avoids asyncio's subprocess
machinery (a fork of the whole server, a watcher per child: ~8 ms a job): `Popen`
without `preexec_fn` uses vfork (~0.6 ms); the exit is seen through a pidfd and the
output through non-blocking pipes on the event loop. The memory limit is set with
prlimit(2) right after the exec rather than before it (a `preexec_fn` would force a
full fork, and exec'ing through prlimit(1) costs ~1.3 ms CPU a job): the program's
first few microseconds run unlimited, which matters little for RLIMIT_AS, a coarse
limit anyway (its children inherit it). Attempts with `binds` (SageMaker's /opt/ml)
do take the full fork: their child enters a private mount namespace before the exec
(see `namespace`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kobako.runtime.base import AttemptSpec, OutputLine, StartError
from kobako.runtime.namespace import Binder

log = logging.getLogger("kobako.runtime")

_LINE_LIMIT = 1024 * 1024
# Server variables a job must not inherit (its credentials are not the server's).
_PRIVATE_PREFIXES = ("AWS_", "KOBAKO_")


def base_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES)}


def _encoded(env: dict[str, str]) -> dict[bytes, bytes]:
    return {os.fsencode(k): os.fsencode(v) for k, v in env.items()}


def _limits(memory_mib: int | None) -> Callable[[], None] | None:
    if memory_mib is None:
        return None
    limit = memory_mib * 1024 * 1024

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


class ProcessAttempt:
    def __init__(self, process: subprocess.Popen[bytes], out_fd: int, err_fd: int) -> None:
        self.process = process
        self.pgid = process.pid
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[OutputLine | None] = asyncio.Queue()
        self._buffers: dict[int, bytearray] = {}
        self._exit: asyncio.Future[int] = self._loop.create_future()
        for fd, name in ((out_fd, "stdout"), (err_fd, "stderr")):
            fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)  # a fresh pipe has no other flag
            self._buffers[fd] = bytearray()
            self._loop.add_reader(fd, self._readable, fd, name)
        self._watch_exit()

    @property
    def ref(self) -> str:
        return f"pgid:{self.pgid}"

    # ------------------------------------------------------------ output

    def _readable(self, fd: int, name: str) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buffer = self._buffers[fd]
        now = int(time.time() * 1000)
        if data:
            buffer += data
            while True:
                cut = buffer.find(b"\n")
                if cut < 0 and len(buffer) < _LINE_LIMIT:
                    break
                end = cut + 1 if 0 <= cut < _LINE_LIMIT else _LINE_LIMIT
                self._emit(bytes(buffer[:end]), name, now)
                del buffer[:end]
            return
        if buffer:
            self._emit(bytes(buffer), name, now)
        self._loop.remove_reader(fd)
        os.close(fd)
        del self._buffers[fd]
        if not self._buffers:
            self._queue.put_nowait(None)

    def _emit(self, raw: bytes, name: str, now: int) -> None:
        text = raw.decode(errors="replace").rstrip("\r\n")
        self._queue.put_nowait(OutputLine(now, name, text))

    async def lines(self) -> AsyncIterator[OutputLine]:
        while True:
            item = await self._queue.get()
            if item is None:
                self._queue.put_nowait(None)
                return
            yield item

    # ------------------------------------------------------------ exit

    def _watch_exit(self) -> None:
        try:
            pidfd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):
            # No pidfd (old kernel, not Linux): one thread blocks in waitpid.
            threading.Thread(target=self._wait_thread, daemon=True).start()
            return

        def exited() -> None:
            if self._reap():
                self._loop.remove_reader(pidfd)
                os.close(pidfd)

        self._loop.add_reader(pidfd, exited)

    def _wait_thread(self) -> None:
        _, status = os.waitpid(self.process.pid, 0)
        self._loop.call_soon_threadsafe(self._settle, status)

    def _reap(self) -> bool:
        try:
            pid, status = os.waitpid(self.process.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.process.pid, 255 << 8
        if pid == 0:
            return False
        self._settle(status)
        return True

    def _settle(self, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        self.process.returncode = code
        # Leftover descendants (daemons, `cmd &`) die with the attempt.
        _killpg(self.pgid)
        if not self._exit.done():
            self._exit.set_result(128 - code if code < 0 else code)

    async def wait(self) -> int:
        """The exit code; 128 + N for death by signal N."""
        if self._exit.done():
            return self._exit.result()
        return await asyncio.shield(self._exit)

    async def kill(self) -> None:
        if not self._exit.done():
            _killpg(self.pgid)


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class ProcessRuntime:
    """Runs attempts as local process groups and remembers them for shutdown."""

    def __init__(self) -> None:
        self._running: dict[int, ProcessAttempt] = {}
        self._spawner: ThreadPoolExecutor | None = None
        self._binder = Binder()
        self._told: set[str] = set()
        # The server's environment, read and encoded once (os.environ decodes every
        # key and value on each read), and where each program name was found on PATH.
        self._base_env: dict[bytes, bytes] | None = None
        self._found: dict[tuple[str, str], str] = {}

    def _environment(self, extra: dict[str, str]) -> dict[bytes, bytes]:
        if self._base_env is None:
            self._base_env = _encoded(base_environment())
        env = dict(self._base_env)
        env.update(_encoded(extra))
        return env

    def _executable(self, program: str, env: dict[bytes, bytes]) -> str | None:
        """`program`'s path on the job's PATH, remembered: Popen would otherwise build
        and try a candidate per PATH entry on every spawn. None: let Popen search."""
        if "/" in program:
            return None
        path = os.fsdecode(env.get(b"PATH", os.defpath.encode()))
        found = self._found.get((program, path))
        if found is None:
            found = shutil.which(program, path=path)
            if found is None:
                return None
            self._found[(program, path)] = found
        return found

    async def start(self, spec: AttemptSpec) -> ProcessAttempt:
        if not spec.argv:
            raise StartError("CannotStartContainerError: no command given")
        if not os.path.isdir(spec.workdir):  # Batch's pooled directories exist already
            spec.workdir.mkdir(parents=True, exist_ok=True)
        env = self._environment(spec.env)
        argv = list(spec.argv)
        executable = self._executable(argv[0], env)
        preexec = None
        limit: int | None = None
        # CUDA reserves address space far beyond what it uses, so RLIMIT_AS would make
        # every GPU job fail at CUDA init: GPU attempts run without it.
        if spec.memory_mib is not None and not spec.gpus:
            if hasattr(resource, "prlimit"):
                limit = spec.memory_mib * 1024 * 1024
            else:
                preexec = _limits(spec.memory_mib)
        if self._spawner is None:
            self._spawner = ThreadPoolExecutor(2, thread_name_prefix="kobako-spawn")
        loop = asyncio.get_running_loop()
        if spec.binds:
            preexec = await loop.run_in_executor(
                self._spawner, self._binding, spec.binds, preexec)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            # vfork blocks the caller until the child has exec'd: a spawner thread
            # keeps that wait (long on a busy machine) off the event loop.
            try:
                process = await loop.run_in_executor(self._spawner, functools.partial(
                    _popen, argv, executable, out_w, err_w, spec.workdir, env, preexec, limit))
            except FileNotFoundError:
                if executable is None:
                    raise
                # The remembered path is gone: forget it and let Popen search PATH.
                self._found.clear()
                process = await loop.run_in_executor(self._spawner, functools.partial(
                    _popen, argv, None, out_w, err_w, spec.workdir, env, preexec, limit))
        except FileNotFoundError:
            os.close(out_r)
            os.close(err_r)
            raise StartError(
                f"CannotStartContainerError: executable file not found: {spec.argv[0]}"
            ) from None
        except PermissionError:
            os.close(out_r)
            os.close(err_r)
            raise StartError(
                f"CannotStartContainerError: permission denied: {spec.argv[0]}"
            ) from None
        except (OSError, subprocess.SubprocessError) as exc:
            os.close(out_r)
            os.close(err_r)
            raise StartError(f"CannotStartContainerError: {exc}") from None
        finally:
            os.close(out_w)
            os.close(err_w)
        attempt = ProcessAttempt(process, out_r, err_r)
        self._running[attempt.pgid] = attempt
        attempt._exit.add_done_callback(lambda _: self._running.pop(attempt.pgid, None))
        return attempt

    def _binding(self, binds: tuple[tuple[Path, str], ...],
                 then: Callable[[], None] | None) -> Callable[[], None] | None:
        """The preexec_fn that binds `binds` (and runs `then`), or `then` alone where
        this server may not bind: said once per reason in the server log."""
        why = self._binder.check([target for _, target in binds])
        if why:
            if why not in self._told:
                self._told.add(why)
                log.warning("process runtime: %s; jobs see their files only under their "
                            "job directory, not at %s", why,
                            ", ".join(target for _, target in binds))
            return then
        for source, _ in binds:
            source.mkdir(parents=True, exist_ok=True)
        enter = self._binder.hook(binds)
        if then is None:
            return enter

        def both() -> None:
            enter()
            then()

        return both

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
        if self._spawner is not None:
            self._spawner.shutdown(wait=False)
            self._spawner = None


def _popen(argv: list[str], executable: str | None, out: int, err: int, cwd: Path,
           env: dict[bytes, bytes], preexec: Callable[[], None] | None, limit: int | None
           ) -> subprocess.Popen[bytes]:
    """Spawn (vfork: no preexec_fn), then set RLIMIT_AS on the child at once."""
    process = subprocess.Popen(argv, executable=executable, stdin=subprocess.DEVNULL,
                               stdout=out, stderr=err, cwd=cwd, env=env,
                               start_new_session=True, preexec_fn=preexec)
    if limit is not None:
        with contextlib.suppress(ProcessLookupError):
            resource.prlimit(process.pid, resource.RLIMIT_AS, (limit, limit))
    return process


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
