"""One Runtime that hands each attempt to the backend its compute environment chose.

Batch keeps a single `Runtime`; the choice ("process" or "container") travels in
`AttemptSpec.runtime`, and a durable ref says which backend can reap it, so the
scheduler needs no knowledge of backends. The container backend is built lazily: a
server that never runs a container never needs an engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import logging
from pathlib import Path

from kobako.config import RuntimeConfig
from kobako.runtime.base import Attempt, AttemptSpec, StartError
from kobako.runtime.container import ContainerRuntime
from kobako.runtime.process import ProcessRuntime

log = logging.getLogger("kobako.runtime")
_PING_S = 5.0


def owner_label(data_dir: Path) -> str:
    """Stable across restarts, distinct per data directory (servers may share an engine)."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


class RuntimeSet:
    """Dispatches start/reap/close to the process and container backends."""

    def __init__(self, config: RuntimeConfig, data_dir: Path) -> None:
        self.default = config.default
        self.process = ProcessRuntime()
        self.container = ContainerRuntime(config.container_host, owner_label(data_dir),
                                          config.pull_timeout, config.registry_mirror)
        self._opening: asyncio.Task[None] | None = None

    async def open_in_background(self) -> None:
        """Start `open` without holding up the server's first answer (the Docker SDK
        import and the engine ping take a while); the task is kept until it ends."""
        self._opening = asyncio.create_task(self.open())

    async def open(self) -> None:
        """At server start: say which runtime is the default and whether the engine
        answers, and remove containers a previous run of this server left behind."""
        await asyncio.to_thread(importlib.import_module, "docker")  # off the event loop
        try:
            engine = await asyncio.wait_for(self.container.describe(), _PING_S)
        except TimeoutError:
            log.warning("batch runtime: default %s; container engine at %s did not answer "
                        "within %g s", self.default, self.container.host, _PING_S)
            return
        except Exception as error:
            level = logging.WARNING if self.default == "container" else logging.INFO
            log.log(level, "batch runtime: default %s; container engine at %s did not "
                    "answer: %s", self.default, self.container.host, error)
            return
        log.info("batch runtime: default %s; container engine answered: %s", self.default,
                 engine)
        removed = await self.container.sweep()
        if removed:
            log.info("removed %d container(s) left by a previous run", removed)

    async def start(self, spec: AttemptSpec) -> Attempt:
        name = spec.runtime or self.default
        if name == "process":
            return await self.process.start(spec)
        if name == "container":
            await self._opened()
            return await self.container.start(spec)
        raise StartError(f"CannotStartContainerError: unknown kobako runtime {name!r} "
                         "(tag kobako:runtime must be process or container)")

    async def _opened(self) -> None:
        """Wait for the start-up sweep: it removes every container and network with this
        data directory's label, so one this run creates before the sweep has listed them
        would be taken for a previous run's and removed under its job."""
        if self._opening is not None and not self._opening.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._opening)

    async def create_network(self, job_id: str) -> str:
        """Networks are the container backend's (processes share the host's)."""
        await self._opened()
        return await self.container.create_network(job_id)

    async def remove_network(self, name: str, job_id: str) -> None:
        await self.container.remove_network(name, job_id)

    async def reap(self, ref: str, marker: str) -> None:
        if ref.startswith(("container:", "network:")):
            await self.container.reap(ref, marker)
        else:
            await self.process.reap(ref, marker)

    async def close(self) -> None:
        await self.process.close()
        await self.container.close()
