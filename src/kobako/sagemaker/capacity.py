"""How many CPUs, how much memory and which GPUs SageMaker work holds: Batch's ledger.

SageMaker jobs take their capacity from the Batch engine's host accounting
(`Engine.hold` / `unhold`), so Batch jobs and SageMaker jobs never oversubscribe
the machine together; without an engine (a SageMaker-only build) a `LocalLedger`
keeps the same books. CPU and memory asks larger than the machine are clamped to
it, so a job for an ml.m5.24xlarge still runs (alone) on a laptop; GPUs are never
clamped, since the code asked for them will not run without them: a job that needs
more GPUs than the host has fails at once (ResourceLimitExceeded) instead of
waiting forever. A job waiting for capacity stays in its Starting state. Endpoints
book their variants' instances here too, for as long as they serve (see `endpoints`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kobako.batch.engine import Host

# Batch frees capacity without telling SageMaker: a waiting job looks again this often.
_POLL_S = 0.25


class Ledger(Protocol):
    host: Host

    def hold(self, owner: str, vcpus: float, memory_mib: int, gpus: int
             ) -> tuple[str, ...] | None: ...

    def unhold(self, owner: str) -> None: ...


@dataclass
class LocalLedger:
    """The same books as Batch's engine keeps, for a build without Batch."""

    host: Host
    held: dict[str, tuple[float, int, tuple[str, ...]]] = field(default_factory=dict)

    def hold(self, owner: str, vcpus: float, memory_mib: int, gpus: int
             ) -> tuple[str, ...] | None:
        cpus = sum(h[0] for h in self.held.values())
        memory = sum(h[1] for h in self.held.values())
        taken = {g for h in self.held.values() for g in h[2]}
        free = [g for g in self.host.gpu_ids if g not in taken]
        if cpus + vcpus > self.host.cpus or memory + memory_mib > self.host.memory_mib \
                or gpus > len(free):
            return None
        self.held[owner] = (vcpus, memory_mib, tuple(free[:gpus]))
        return self.held[owner][2]

    def unhold(self, owner: str) -> None:
        self.held.pop(owner, None)


class NeverFits(Exception):
    """The ask exceeds the whole host; the message is the job's FailureReason."""


@dataclass(frozen=True)
class Grant:
    cpus: int
    memory_mib: int
    gpus: int
    gpu_ids: tuple[str, ...] = ()
    owner: str = ""


class Capacity:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._changed = asyncio.Condition()

    @property
    def host(self) -> Host:
        return self.ledger.host

    def clamp(self, cpus: int, memory_mib: int, gpus: int) -> Grant:
        """The ask this host can honour: CPU and memory clamped; raises NeverFits on GPUs."""
        host = self.host
        if gpus > host.gpus:
            raise NeverFits(
                f"ResourceLimitExceeded: The job needs {gpus} GPU(s) but this kobako host has "
                f"{host.gpus}; it can never be placed.")
        return Grant(max(1, min(cpus, int(host.cpus))), min(memory_mib, host.memory_mib), gpus)

    def try_acquire(self, ask: Grant) -> Grant | None:
        """`ask` taken now if it fits, else None (nothing waits)."""
        owner = f"sagemaker:{secrets.token_hex(8)}"
        ids = self.ledger.hold(owner, float(ask.cpus), ask.memory_mib, ask.gpus)
        return None if ids is None else Grant(ask.cpus, ask.memory_mib, ask.gpus, ids, owner)

    async def acquire(self, ask: Grant, waiting: Callable[[], None] | None = None) -> Grant:
        """Wait until `ask` fits in the shared ledger; `waiting` is called once if it must
        wait. Returns the grant with its GPU ids."""
        owner = f"sagemaker:{secrets.token_hex(8)}"
        told = False
        async with self._changed:
            while True:
                ids = self.ledger.hold(owner, float(ask.cpus), ask.memory_mib, ask.gpus)
                if ids is not None:
                    return Grant(ask.cpus, ask.memory_mib, ask.gpus, ids, owner)
                if not told and waiting is not None:
                    waiting()
                    told = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), _POLL_S)

    async def release(self, grant: Grant) -> None:
        self.ledger.unhold(grant.owner)
        async with self._changed:
            self._changed.notify_all()
