"""The container backend: each attempt is an OCI container on a Docker Engine API.

Any engine that serves that API works (Docker, or Podman's `podman system service`),
found at the configured host, else DOCKER_HOST, else the usual sockets. docker-py is
blocking, so engine calls run in threads (the long-lived ones in their own, see
threads.py). Containers carry the job id and an owner label
(one per data directory), so a restarted server finds and removes what its previous
run left behind even when it never recorded the container's id. A job whose containers
must reach each other by name (multi-instance SageMaker training) gets its own
user-defined bridge network, labelled the same way; the engine's DNS (Docker's embedded
server, Podman's aardvark-dns) answers for the containers' aliases on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
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
_STREAMS = ("stdout", "stderr")
# After the exit, how long the log followers get to end by themselves before the rest of
# the output is read without following (Podman keeps a follow open for 250 ms or more
# after the exit); longer once many lines came, when reading them again costs more.
_LOG_GRACE_S = 0.02
_LOG_DRAIN_S = 1.0
_REREAD_LINES = 10_000
# Inspection for the exit: 10 ms doubling to 200 ms for the job's first seconds (short
# jobs end quickly), then on up to 2 s (a long job's exit can wait; the engine can't take
# many inspections a second from each of many jobs).
_POLL_FIRST_S = 0.01
_POLL_FAST_CAP_S = 0.2
_POLL_FAST_FOR_S = 2.0
_POLL_SLOW_CAP_S = 2.0
_EXITED = ("exited", "dead", "stopped")


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


def network_name(owner: str, job_id: str) -> str:
    """One job's network: stable (a restart finds it by its label anyway) and a valid
    engine name whatever the job id holds (ARNs have ':' and '/')."""
    return f"kobako-{owner[:12]}-{hashlib.sha256(job_id.encode()).hexdigest()[:16]}"


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
        self._born = time.monotonic()
        self._wait_error: str | None = None
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
                if stream not in self._ended:  # not merely cut by the removal
                    log.warning("log stream of container %s broke: %s",
                                self.container_id[:12], error)
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

    def _wait_blocking(self) -> int | None:
        """The engine's wait; None if it failed (why: in _wait_error). Never raises: the
        answer may come after inspection found the exit and nobody looks at it."""
        try:
            return int(self.client.api.wait(self.container_id)["StatusCode"])
        except (docker.errors.APIError, OSError) as error:
            self._wait_error = str(error)
            return None

    async def wait(self) -> int:
        return await asyncio.shield(self._final)

    async def _drain(self) -> None:
        """End both output streams once the container has exited (by then the engine
        holds all its output). A follower that does not end within a short grace (Podman
        keeps a follow open for a while after the exit), or that broke, is replaced by one
        read without following, whose lines past those already delivered are delivered."""
        pending = [f for f in self._followers.values() if not f.done()]
        if pending:
            many = max(self._emitted.values()) >= _REREAD_LINES
            await asyncio.wait(pending, timeout=_LOG_DRAIN_S if many else _LOG_GRACE_S)
        short = [stream for stream, follower in self._followers.items()
                 if not follower.done() or not follower.result()]
        rests = await asyncio.gather(*(asyncio.to_thread(self._read_all, stream)
                                       for stream in short), return_exceptions=True)
        for stream, rest in zip(short, rests, strict=True):
            if isinstance(rest, BaseException):
                if not isinstance(rest, docker.errors.APIError | OSError):
                    raise rest
                continue
            for line in rest[self._emitted[stream]:]:
                self._deliver(stream, line)
        for stream in _STREAMS:
            self._end(stream)

    async def _exit_code(self) -> tuple[int, dict[str, Any] | None]:
        """The exit code, and the state when inspection is what saw the exit.

        The engine's wait (started with the attempt) races inspection: Podman's wait
        notices exits late (hundreds of ms), and sometimes misses one that follows the
        start closely and would then block forever. Inspection backs off from 10 ms, and
        starts over from 10 ms when both log streams end (the exit is near then)."""
        delay = _POLL_FIRST_S
        logs_ended = False
        while True:
            if self._exit.done() and (code := self._exit.result()) is not None:
                return code, None
            state = await asyncio.to_thread(self._state)
            if self._exit.done() and (code := self._exit.result()) is not None:
                return code, None
            if not state:
                detail = self._wait_error or "the container is gone"
                self.exit_reason = f"CannotInspectContainerError: {detail}"
                return 137, None
            if state.get("Status") in _EXITED:
                return int(state.get("ExitCode") or 0), state
            wake: set[asyncio.Future[Any]] = {f for f in self._followers.values()
                                              if not f.done()}
            if not wake and not logs_ended:
                logs_ended, delay = True, _POLL_FIRST_S
            if not self._exit.done():
                wake.add(self._exit)
            if wake:
                await asyncio.wait(wake, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(delay)
            young = time.monotonic() - self._born < _POLL_FAST_FOR_S
            delay = min(delay * 2, _POLL_FAST_CAP_S if young else _POLL_SLOW_CAP_S)

    async def _finish(self) -> int:
        try:
            code, state = await self._exit_code()
            await self._drain()
        except BaseException:
            for stream in _STREAMS:
                self._end(stream)
            raise
        try:
            if state is None and code != 0:
                state = await asyncio.to_thread(self._state)
            if (state or {}).get("OOMKilled") or (
                    code == 137 and self.memory_limited and not self._killed
                    and self.exit_reason is None):
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


def _create(client: docker.DockerClient, image: str, kwargs: dict[str, Any]) -> str:
    """`containers.create` without the inspection of the new container that it adds."""
    try:
        from docker.models.containers import _create_container_args
    except ImportError:  # a docker-py that moved it: the public call, one round trip more
        return str(client.containers.create(image, **kwargs).id)
    args = _create_container_args({"command": None, **kwargs, "image": image,
                                   "version": client.api._version})
    return str(client.api.create_container(**args)["Id"])


async def remove(client: docker.DockerClient, container_id: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        try:
            await asyncio.to_thread(client.api.remove_container, container_id, force=True)
        except (docker.errors.APIError, OSError) as error:
            log.warning("could not remove container %s: %s", container_id[:12], error)


async def _remove_network(client: docker.DockerClient, name: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        try:
            await asyncio.to_thread(client.api.remove_network, name)
        except (docker.errors.APIError, OSError) as error:
            log.warning("could not remove network %s: %s", name, error)


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
        self._networks: set[str] = set()  # created by this run: never swept

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
        if self._client is not None:
            return self._client
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
            container_id = await asyncio.to_thread(_create, client, spec.image, kwargs)
        except (ValueError, KeyError, OSError) as error:
            raise StartError(f"CannotCreateContainerError: {error}") from None
        except docker.errors.APIError as error:
            raise StartError(f"CannotCreateContainerError: {error.explanation or error}"
                             ) from None
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

    async def create_network(self, job_id: str) -> str:
        """A bridge network for one job's containers, labelled with the job and owner.
        One of the same name left by an earlier run for this job is removed first."""
        name = network_name(self.owner, job_id)
        labels = {JOB_LABEL: job_id, OWNER_LABEL: self.owner}
        try:
            client = await self.client()
        except docker.errors.DockerException as error:
            raise StartError(f"CannotStartContainerError: container engine at {self.host} "
                             f"did not answer: {error}") from None
        create = functools.partial(client.api.create_network, name, driver="bridge",
                                   labels=labels, check_duplicate=True)
        try:
            try:
                await asyncio.to_thread(create)
            except (docker.errors.APIError, OSError):
                # Docker answers 409 for a name in use, Podman 500: look, don't parse.
                if await self._network_labels(client, name) is None:
                    raise
                await self.remove_network(name, job_id)
                await asyncio.to_thread(create)
        except (docker.errors.APIError, OSError) as error:
            detail = getattr(error, "explanation", None) or error
            raise StartError(f"CannotStartContainerError: could not create network {name}: "
                             f"{detail}") from None
        self._networks.add(name)
        return name

    async def _network_labels(self, client: docker.DockerClient, name: str
                              ) -> dict[str, str] | None:
        """The network's labels; None if it does not exist (or cannot be inspected)."""
        try:
            attrs = await asyncio.to_thread(client.api.inspect_network, name)
        except (docker.errors.APIError, OSError):
            return None
        return dict(attrs.get("Labels") or {})

    async def remove_network(self, name: str, job_id: str) -> None:
        """Remove the job's network: first the containers of ours still attached (an
        engine refuses to remove a network in use), then the network."""
        try:
            client = await self.client()
        except docker.errors.DockerException:
            return
        labels = await self._network_labels(client, name)
        if labels is None or labels.get(OWNER_LABEL) != self.owner \
                or labels.get(JOB_LABEL) != job_id:
            self._networks.discard(name)
            return
        try:
            attached = await asyncio.to_thread(
                client.api.containers, all=True,
                filters={"network": name, "label": f"{OWNER_LABEL}={self.owner}"})
        except (docker.errors.APIError, OSError):
            attached = []
        for entry in attached:
            await remove(client, str(entry["Id"]))
        await _remove_network(client, name)
        self._networks.discard(name)

    async def reap(self, ref: str, marker: str) -> None:
        if ref.startswith("network:"):
            await self.remove_network(ref.split(":", 1)[1], marker.partition("=")[2])
            return
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
        try:
            networks = await asyncio.to_thread(
                client.api.networks, filters={"label": f"{OWNER_LABEL}={self.owner}"})
        except (docker.errors.APIError, OSError) as error:
            log.warning("could not list networks left by a previous run: %s", error)
            networks = []
        for entry in networks:
            name = str(entry.get("Name") or "")
            if name and name not in self._networks:
                log.info("removing network %s left by a previous run (job %s)", name,
                         (entry.get("Labels") or {}).get(JOB_LABEL))
                await _remove_network(client, name)
        return len(found)

    async def close(self) -> None:
        attempts = list(self._running.values())
        self._running.clear()
        for attempt in attempts:
            await attempt.kill()
        if self._client is not None:
            await asyncio.gather(*(remove(self._client, a.container_id) for a in attempts))
