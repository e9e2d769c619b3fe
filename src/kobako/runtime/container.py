"""The container backend: each attempt is an OCI container on a Docker Engine API.

Any engine that serves that API works (Docker, or Podman's `podman system service`),
found at the configured host, else DOCKER_HOST, else the usual sockets. docker-py is
blocking, so engine calls run in threads (the long-lived ones in their own, see
threads.py). Containers carry the job id and an owner label
(one per data directory), so a restarted server finds and removes what its previous
run left behind even when it never recorded the container's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kobako.runtime.base import AttemptSpec, OutputLine, StartError
from kobako.runtime.container_args import JOB_LABEL, OWNER_LABEL, create_kwargs
from kobako.runtime.images import ImageCache, PullError
from kobako.runtime.lazy import LazyModule
from kobako.runtime.threads import in_thread

if TYPE_CHECKING:
    import docker
    import docker.errors
    import docker.types
else:
    docker = LazyModule("docker")


log = logging.getLogger("kobako.runtime")

OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
_LOG_DRAIN_S = 1.0
_STREAMS = ("stdout", "stderr")


def default_host() -> str | None:
    """DOCKER_HOST, else the first Docker or Podman socket that exists."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    candidates = [*_SOCKETS, *([f"{runtime_dir}/podman/podman.sock"] if runtime_dir else [])]
    for path in candidates:
        if Path(path).exists():
            return f"unix://{path}"
    return None


def _timestamp_ms(stamp: str, arrived_ms: int) -> int:
    """The engine's RFC 3339 timestamp in ms; engines that stamp whole seconds only
    (Podman) get the arrival time within that second, keeping lines' order."""
    try:
        whole, _, fraction = stamp.rstrip("Z").partition(".")
        seconds = datetime.fromisoformat(whole + "+00:00").timestamp()
    except ValueError:
        return arrived_ms
    if fraction:
        return int(seconds * 1000) + int(fraction[:3].ljust(3, "0"))
    return min(max(arrived_ms, int(seconds * 1000)), int(seconds * 1000) + 999)


def _split_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode(errors="replace").rstrip("\r")
    if pending:
        yield pending.decode(errors="replace").rstrip("\r")


class ContainerAttempt:
    """One running container: its output lines, its exit, and removal once done.

    Everything after the start is driven from here, not by the caller: the output
    ends, and the container is removed, once the container exits, whether or not
    anyone awaits `wait()` (Batch may read all lines first).
    """

    def __init__(self, client: docker.DockerClient, container_id: str, memory_limited: bool,
                 done: Callable[[str], None]) -> None:
        self.client = client
        self.container_id = container_id
        self.memory_limited = memory_limited
        self.exit_reason: str | None = None
        self._killed = False
        self._done = done
        self._queue: asyncio.Queue[OutputLine | None] = asyncio.Queue()
        self._emitted = dict.fromkeys(_STREAMS, 0)
        self._ended: set[str] = set()
        self._followers = {name: self._follow(name) for name in _STREAMS}
        self._exit = in_thread(self._wait_blocking)
        self._final = asyncio.ensure_future(self._finish())

    @property
    def ref(self) -> str:
        return f"container:{self.container_id}"

    def _deliver(self, stream: str, raw: str) -> None:
        """On the loop: queue one line unless the stream was already closed."""
        if stream in self._ended:
            return
        self._emitted[stream] += 1
        stamp, _, text = raw.partition(" ")
        self._queue.put_nowait(OutputLine(_timestamp_ms(stamp, int(time.time() * 1000)),
                                          stream, text))

    def _end(self, stream: str) -> None:
        if stream not in self._ended:
            self._ended.add(stream)
            self._queue.put_nowait(None)

    def _logs(self, stream: str, follow: bool) -> Iterator[str]:
        chunks = self.client.api.logs(self.container_id, stdout=stream == "stdout",
                                      stderr=stream == "stderr", stream=True, follow=follow,
                                      timestamps=True)
        return _split_lines(chunks)

    def _read_all(self, stream: str) -> list[str]:
        return list(self._logs(stream, follow=False))

    def _follow(self, stream: str) -> asyncio.Future[bool]:
        """Deliver lines as they come; True once the stream ended cleanly."""
        loop = asyncio.get_running_loop()

        def follow() -> bool:
            try:
                for line in self._logs(stream, follow=True):
                    loop.call_soon_threadsafe(self._deliver, stream, line)
            except (docker.errors.APIError, OSError) as error:
                log.warning("log stream of container %s broke: %s", self.container_id[:12],
                            error)
                return False
            return True

        return in_thread(follow)

    async def lines(self) -> AsyncIterator[OutputLine]:
        done = 0
        while done < len(_STREAMS):
            item = await self._queue.get()
            if item is None:
                done += 1
            else:
                yield item

    def _wait_blocking(self) -> int:
        try:
            return int(self.client.api.wait(self.container_id)["StatusCode"])
        except (docker.errors.APIError, OSError) as error:
            self.exit_reason = f"CannotInspectContainerError: {error}"
            return 137

    async def wait(self) -> int:
        return await asyncio.shield(self._final)

    async def _drain(self) -> None:
        """End both output streams. Podman sometimes keeps a follow open after the
        exit; such a stream (or one that broke) is read once more without following,
        and the lines past those already delivered are delivered."""
        _, late = await asyncio.wait(self._followers.values(), timeout=_LOG_DRAIN_S)
        for stream, follower in self._followers.items():
            if follower in late or not follower.result():
                try:
                    rest = await asyncio.to_thread(self._read_all, stream)
                except (docker.errors.APIError, OSError):
                    rest = []
                for line in rest[self._emitted[stream]:]:
                    self._deliver(stream, line)
            self._end(stream)

    async def _exit_code(self) -> int:
        """The engine's wait, with inspection as a fallback: Podman's wait sometimes
        misses an exit that follows the start closely, and would then block forever."""
        while True:
            logs_done = all(f.done() for f in self._followers.values())
            done, _ = await asyncio.wait({self._exit}, timeout=0.5 if logs_done else 2.0)
            if done:
                return self._exit.result()
            state = await asyncio.to_thread(self._state)
            if not state:
                self.exit_reason = "CannotInspectContainerError: the container is gone"
                return 137
            if state.get("Status") in ("exited", "dead", "stopped"):
                return int(state.get("ExitCode") or 0)

    async def _finish(self) -> int:
        try:
            code = await self._exit_code()
            await self._drain()
        except BaseException:
            for stream in _STREAMS:
                self._end(stream)
            raise
        try:
            state = await asyncio.to_thread(self._state)
            if state.get("OOMKilled") or (code == 137 and self.memory_limited
                                          and not self._killed and self.exit_reason is None):
                # Podman does not always set OOMKilled; a SIGKILL that kobako did not send
                # to a memory-limited container is the kernel's OOM killer.
                self.exit_reason = OOM_REASON
        finally:
            await remove(self.client, self.container_id)
            self._done(self.container_id)
        return code

    def _state(self) -> dict[str, Any]:
        try:
            attrs: dict[str, Any] = self.client.api.inspect_container(self.container_id)
        except docker.errors.APIError:
            return {}
        state: dict[str, Any] = attrs.get("State") or {}
        return state

    async def kill(self) -> None:
        self._killed = True
        with contextlib.suppress(docker.errors.APIError, OSError):
            await asyncio.to_thread(self.client.api.kill, self.container_id)


async def remove(client: docker.DockerClient, container_id: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        try:
            await asyncio.to_thread(client.api.remove_container, container_id, force=True)
        except (docker.errors.APIError, OSError) as error:
            log.warning("could not remove container %s: %s", container_id[:12], error)


class ContainerRuntime:
    """Runs attempts as containers on a Docker Engine API endpoint."""

    def __init__(self, host: str | None, owner: str, pull_timeout: float = 300.0,
                 mirror: str | None = None) -> None:
        self.host = host or default_host()
        self.owner = owner
        self.pull_timeout = pull_timeout
        self.mirror = mirror
        self._client: docker.DockerClient | None = None
        self._images: ImageCache | None = None
        self._connect_lock = threading.Lock()
        self._running: dict[str, ContainerAttempt] = {}

    def _connect(self) -> docker.DockerClient:
        with self._connect_lock:
            if self._client is None:
                if self.host is None:
                    raise docker.errors.DockerException(
                        "no container engine: set [runtime] container_host or DOCKER_HOST")
                self._client = docker.DockerClient(base_url=self.host, version="auto",
                                                   timeout=60, max_pool_size=64)
            return self._client

    async def client(self) -> docker.DockerClient:
        return await asyncio.to_thread(self._connect)

    async def describe(self) -> str:
        """'Podman Engine 4.3.1 (API 1.41) at unix:///...'; raises if it does not answer."""
        client = await in_thread(self._connect)
        version: dict[str, Any] = await in_thread(client.version)
        name = next((c.get("Name") for c in version.get("Components") or []), "Docker Engine")
        return f"{name} {version.get('Version')} (API {version.get('ApiVersion')}) at {self.host}"

    async def start(self, spec: AttemptSpec) -> ContainerAttempt:
        if not spec.image:
            raise StartError("CannotStartContainerError: the job definition names no image")
        job_id = spec.options.get("job_id") or spec.env.get("AWS_BATCH_JOB_ID", "")
        try:
            client = await self.client()
        except docker.errors.DockerException as error:
            raise StartError(f"CannotStartContainerError: container engine at {self.host} "
                             f"did not answer: {error}") from None
        if self._images is None:
            self._images = ImageCache(client, self.pull_timeout, self.mirror)
        try:
            await self._images.ensure(spec.image)
        except PullError as error:
            raise StartError(f"CannotPullContainerError: {error}") from None
        except (docker.errors.APIError, OSError) as error:
            raise StartError(f"CannotPullContainerError: {error}") from None
        try:
            kwargs = create_kwargs(spec, job_id, self.owner)
            container = await asyncio.to_thread(client.containers.create, spec.image, **kwargs)
        except (ValueError, KeyError, OSError) as error:
            raise StartError(f"CannotCreateContainerError: {error}") from None
        except docker.errors.APIError as error:
            raise StartError(f"CannotCreateContainerError: {error.explanation or error}"
                             ) from None
        container_id = str(container.id)
        try:
            await asyncio.to_thread(client.api.start, container_id)
        except (docker.errors.APIError, OSError) as error:
            await remove(client, container_id)
            detail = getattr(error, "explanation", None) or error
            raise StartError(f"CannotStartContainerError: {detail}") from None
        attempt = ContainerAttempt(client, container_id, spec.memory_mib is not None,
                                   self._forget)
        self._running[container_id] = attempt
        return attempt

    def _forget(self, container_id: str) -> None:
        self._running.pop(container_id, None)

    async def reap(self, ref: str, marker: str) -> None:
        if not ref.startswith("container:"):
            return
        container_id = ref.split(":", 1)[1]
        job_id = marker.partition("=")[2]
        try:
            client = await self.client()
            attrs = await asyncio.to_thread(client.api.inspect_container, container_id)
        except (docker.errors.DockerException, OSError):
            return
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(JOB_LABEL) == job_id:
            await remove(client, container_id)

    async def sweep(self) -> int:
        """Remove every container this data directory's server left behind (at startup,
        nothing of ours runs yet); the number removed."""
        client = await self.client()
        found = await asyncio.to_thread(client.api.containers, all=True,
                                        filters={"label": f"{OWNER_LABEL}={self.owner}"})
        for entry in found:
            log.info("removing container %s left by a previous run (job %s)",
                     str(entry["Id"])[:12], (entry.get("Labels") or {}).get(JOB_LABEL))
            await remove(client, str(entry["Id"]))
        return len(found)

    async def close(self) -> None:
        attempts = list(self._running.values())
        self._running.clear()
        for attempt in attempts:
            await attempt.kill()
        if self._client is not None:
            await asyncio.gather(*(remove(self._client, a.container_id) for a in attempts))
