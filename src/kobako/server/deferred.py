"""Services built after the server listens, so that S3 answers at once.

Importing and building Batch, Step Functions, SageMaker and the rest (their modules,
botocore models, the engines' recovery of a previous run's work) is most of a start,
and S3, which a client usually calls first, needs none of it. `DeferredServices`
builds them once, in a worker thread, as soon as the server is up, then runs their
start-up hooks on the event loop. A request for one of them waits until all are built
*and* started (never answered by a service that has not recovered yet), and many
waiting requests share the one build.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from kobako.protocol.errors import AwsError
from kobako.server.service import Service

log = logging.getLogger("kobako")


class DeferredServices:
    """Services that `build` makes (in a thread), started once, on first need or `start`.

    `signing_names` are the SigV4 scope names the built services will answer to, known
    before they exist so that routing can tell "still starting" from "not served".
    """

    def __init__(self, signing_names: Iterable[str], build: Callable[[], list[Service]],
                 on_ready: Callable[[list[Service]], None] | None = None) -> None:
        self.signing_names = frozenset(signing_names)
        self._build = build
        # Called on the loop once they have started, before any waiter resumes.
        self.on_ready = on_ready
        self._task: asyncio.Task[list[Service]] | None = None
        self._closing = False
        # Those whose start-up hooks began: their shutdown hooks run at `close`.
        self.started: list[Service] = []

    def start(self) -> None:
        """Begin building, if not begun yet (nor shutting down); call on the event loop."""
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(
                self._start(), name="kobako-deferred-services")

    async def ready(self) -> list[Service]:
        """The services, once built and started; ServiceUnavailable if that failed."""
        self.start()
        if self._task is None:
            raise AwsError("ServiceUnavailable", "kobako is shutting down.", 503,
                           sender_fault=False)
        try:
            # Shielded: a waiting request that goes away must not cancel the build.
            return await asyncio.shield(self._task)
        except Exception as error:
            raise AwsError("ServiceUnavailable", f"kobako could not start this service: "
                           f"{error}", 503, sender_fault=False) from error

    async def _start(self) -> list[Service]:
        began = time.perf_counter()
        try:
            services = await asyncio.to_thread(self._build)
            names = {name for service in services for name in service.signing_names}
            if names != self.signing_names:
                raise RuntimeError(f"deferred services sign as {sorted(names)}, declared "
                                   f"{sorted(self.signing_names)}")
            for service in services:
                if self._closing:
                    raise RuntimeError("the server is shutting down")
                self.started.append(service)
                for hook in service.startup:
                    await hook()
        except Exception:
            if not self._closing:
                log.exception("starting %s failed", ", ".join(sorted(self.signing_names)))
            raise
        log.info("services started: %s (%.2f s after S3)",
                 ", ".join(s.name for s in services), time.perf_counter() - began)
        if self.on_ready is not None:
            self.on_ready(services)
        return services

    async def close(self) -> None:
        """At server shutdown: let a build in progress end (its thread cannot be stopped),
        start nothing more, and run the shutdown hooks of what was started."""
        self._closing = True
        if self._task is not None:
            with contextlib.suppress(Exception):  # logged by _start; stop what started
                await asyncio.shield(self._task)
        for service in self.started:
            for hook in service.shutdown:
                await hook()
