"""How many CPUs, how much memory and how many GPUs SageMaker work may hold at once.

A deliberately small stand-in for Batch's scheduler (kobako.batch.engine): a job
waits in Starting until what its instances ask for is free on this machine. Asks
larger than the machine are clamped to it, so a job for an ml.p4d.24xlarge still
runs (alone) on a laptop. TODO: share one host-wide ledger with Batch's Engine so
Batch jobs and SageMaker jobs do not oversubscribe the machine together.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kobako.batch.engine import Host


@dataclass(frozen=True)
class Grant:
    cpus: int
    memory_mib: int
    gpus: int


class Capacity:
    def __init__(self, host: Host) -> None:
        self.host = host
        self._used = Grant(0, 0, 0)
        self._changed = asyncio.Condition()

    def clamp(self, cpus: int, memory_mib: int, gpus: int) -> Grant:
        return Grant(max(1, min(cpus, int(self.host.cpus))),
                     min(memory_mib, self.host.memory_mib), min(gpus, self.host.gpus))

    def _fits(self, ask: Grant) -> bool:
        used = self._used
        return (used.cpus + ask.cpus <= self.host.cpus
                and used.memory_mib + ask.memory_mib <= self.host.memory_mib
                and used.gpus + ask.gpus <= self.host.gpus)

    async def acquire(self, ask: Grant) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._fits(ask))
            used = self._used
            self._used = Grant(used.cpus + ask.cpus, used.memory_mib + ask.memory_mib,
                               used.gpus + ask.gpus)

    async def release(self, grant: Grant) -> None:
        async with self._changed:
            used = self._used
            self._used = Grant(used.cpus - grant.cpus, used.memory_mib - grant.memory_mib,
                               used.gpus - grant.gpus)
            self._changed.notify_all()
