"""Runs endpoints: one model-server process per production variant, health-checked.

Deploying a variant brings up a model server through `serving` (model data staged,
`model_server.py` or the image's `serve`, GET /ping until it answers 200: InService;
the process dies or the health-check timeout passes: Failed).
Endpoints the database calls InService are redeployed when the server starts.

Each deployment books its variants' GPUs (instance type x count) in the ledger
SageMaker jobs and Batch share, and holds them until it is replaced, deleted or fails,
so a training or Batch job cannot take a GPU an endpoint serves from. CPU and memory
are not booked: an endpoint lives for days and mostly waits for requests, and on one
host booking a whole instance's vCPUs for it would stop every Batch and training job
behind an idle model server (a GPU, by contrast, is handed to one process at a time).
A deployment that needs more GPUs than the host has is refused (ResourceLimitExceeded,
AWS's instance quota error); one that does not fit now waits in Creating/Updating for
up to KOBAKO_ENDPOINT_CAPACITY_WAIT_SECONDS (default 600), then fails with AWS's
insufficient-capacity reason. An update books its new variants beside the old ones
when they fit; when they do not, the old variants give their books up to the new ones
and keep serving, beyond the books, until the new ones are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kobako.batch.engine import Host, gpu_environment
from kobako.logs.store import LogStore, Scope
from kobako.runtime.base import Attempt, Runtime
from kobako.s3.store import S3Store
from kobako.sagemaker import serving
from kobako.sagemaker.capacity import Capacity, Grant, LocalLedger
from kobako.sagemaker.common import now
from kobako.sagemaker.instances import lookup
from kobako.sagemaker.model_client import ModelClient
from kobako.sagemaker.placement import Placer
from kobako.sagemaker.store import ENDPOINT, Key, SageMakerStore

log = logging.getLogger("kobako.sagemaker")

MARKER = "KOBAKO_SAGEMAKER_ENDPOINT"
LIVE = ("Creating", "InService", "Updating", "SystemUpdating")
CAPACITY_WAIT_ENV = "KOBAKO_ENDPOINT_CAPACITY_WAIT_SECONDS"
INSUFFICIENT_CAPACITY = ("Unable to provision requested ML compute capacity. Please retry "
                         "using a different ML instance type.")
# What a serverless variant (no InstanceType) books beside its memory size.


class DeployFailed(Exception):
    """The variant could not be brought up; the message becomes FailureReason."""


@dataclass
class Variant:
    name: str
    weight: float
    port: int
    attempt: Attempt
    pumping: asyncio.Task[None]


class TooBig(Exception):
    """The deployment needs more GPUs than this host has: it can never be placed."""


@dataclass
class Live:
    """What serves one endpoint now, the capacity it holds, and the deployment in
    progress, if any."""

    variants: dict[str, Variant] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    grant: Grant | None = None
    ask: Grant | None = None


class EndpointManager:
    def __init__(self, store: SageMakerStore, s3: S3Store, logs: LogStore, runtime: Runtime,
                 work_root: Path, placer: Placer | None = None,
                 capacity: Capacity | None = None) -> None:
        self.placer = placer or Placer()
        self.capacity = capacity or Capacity(LocalLedger(Host.detect()))
        self.client = ModelClient()
        self.store = store
        self.s3 = s3
        self.logs = logs
        self.runtime = runtime
        self.work_root = work_root
        self.live: dict[Key, Live] = {}

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for key, detail, refs in self.store.with_status(ENDPOINT, (*LIVE, "Deleting")):
            for ref in refs:
                await self.runtime.reap(ref, f"{MARKER}={detail['EndpointArn']}")
            if detail["EndpointStatus"] == "Deleting":
                self.store.delete(key)
                continue
            restarting = "Creating" if detail["EndpointStatus"] == "Creating" else \
                "SystemUpdating"
            detail["EndpointStatus"] = restarting
            self.store.update(key, detail, restarting)
            self.deploy(key, detail, dict(detail["_Deployment"]))

    async def stop(self) -> None:
        for key in list(self.live):
            await self._teardown(key)

    def deploy(self, key: Key, detail: dict[str, Any], deployment: dict[str, Any]) -> None:
        """Bring up `deployment` (variant name -> model and weight) in the background."""
        live = self.live.setdefault(key, Live())
        live.task = asyncio.create_task(self._deploy(key, detail, deployment))

    async def delete(self, key: Key) -> None:
        await self._teardown(key)
        self.store.delete(key)

    async def _teardown(self, key: Key) -> None:
        live = self.live.pop(key, None)
        if live is None:
            return
        if live.task is not None and not live.task.done():
            live.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await live.task
        await self._kill(list(live.variants.values()))
        if live.grant is not None:
            await self.capacity.release(live.grant)
        shutil.rmtree(self._root(key), ignore_errors=True)

    async def _kill(self, variants: list[Variant]) -> None:
        for variant in variants:
            self.client.forget(variant.port)
            await variant.attempt.kill()
            with contextlib.suppress(Exception):
                await variant.attempt.wait()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await variant.pumping

    def _root(self, key: Key) -> Path:
        return self.work_root / f"{key.account}-{key.region}-{key.name}"

    # ------------------------------------------------------------ deploying

    # ------------------------------------------------------------ capacity

    def ask(self, deployment: dict[str, Any]) -> Grant:
        """What `deployment` books: every variant's GPUs (instance type x count). Raises
        TooBig (AWS's instance quota message) when they exceed the host's."""
        gpus = 0
        for spec in deployment.values():
            count = int(spec.get("Count") or 1)
            instance = lookup(str(spec.get("InstanceType") or ""))
            if instance is None:  # serverless: no GPUs
                continue
            gpus += instance.gpus * count
            if instance.gpus * count > self.capacity.host.gpus:
                limit = self.capacity.host.gpus // instance.gpus
                raise TooBig(
                    f"The account-level service limit '{spec['InstanceType']} for endpoint "
                    f"usage' is {limit} Instances, with current utilization of 0 Instances "
                    f"and a request delta of {count} Instances. (This kobako host has "
                    f"{self.capacity.host.gpus} GPU(s); {spec['InstanceType']} has "
                    f"{instance.gpus}.)")
        if gpus > self.capacity.host.gpus:
            raise TooBig(f"The endpoint's variants need {gpus} GPU(s) together but this "
                         f"kobako host has {self.capacity.host.gpus}.")
        return Grant(0, 0, gpus)  # GPUs only: see the module's docstring

    async def _book(self, key: Key, live: Live, ask: Grant) -> Grant:
        """Take `ask` from the ledger: beside what the endpoint holds if it fits, else
        in its place; waits (Creating/Updating) for at most the capacity wait."""
        grant = self.capacity.try_acquire(ask)
        if grant is not None:
            return grant
        if live.grant is not None:
            await self.capacity.release(live.grant)
            live.grant = None
        log.info("endpoint %s waits for capacity on this host", key.name)
        try:
            async with asyncio.timeout(float(os.environ.get(CAPACITY_WAIT_ENV) or 600)):
                return await self.capacity.acquire(ask)
        except TimeoutError:
            raise DeployFailed(INSUFFICIENT_CAPACITY) from None

    async def _deploy(self, key: Key, detail: dict[str, Any], deployment: dict[str, Any]
                      ) -> None:
        """Book capacity, start every variant, then swap them in; a failed update keeps
        the old ones."""
        started: list[Variant] = []
        generation = secrets.token_hex(4)
        live = self.live.setdefault(key, Live())
        grant: Grant | None = None
        try:
            try:
                ask = self.ask(deployment)
            except TooBig as error:
                raise DeployFailed(f"ResourceLimitExceeded: {error}") from None
            grant = await self._book(key, live, ask)
            offset = 0
            for name, spec in deployment.items():
                instance = lookup(str(spec.get("InstanceType") or ""))
                width = (instance.gpus if instance else 0) * int(spec.get("Count") or 1)
                ids = grant.gpu_ids[offset:offset + width]
                offset += width
                started.append(await self._start_variant(key, detail, name, spec, generation,
                                                         ids))
        except asyncio.CancelledError:
            await self._kill(started)
            if grant is not None:
                await self.capacity.release(grant)
            raise
        except Exception as error:
            await self._kill(started)
            if grant is not None:
                await self.capacity.release(grant)
            reason = str(error) if isinstance(error, DeployFailed) else \
                f"InternalServerError: {error}"
            if not isinstance(error, DeployFailed):
                log.exception("deploying endpoint %s failed", key.name)
            if live.variants and live.grant is None and live.ask is not None:
                # The old variants gave their books up to this update: take them back.
                live.grant = self.capacity.try_acquire(live.ask)
            self._settle(key, failed=reason, rollback=bool(live.variants))
            return
        old = list(live.variants.values())
        live.variants = {v.name: v for v in started}
        await self._kill(old)
        if live.grant is not None:
            await self.capacity.release(live.grant)
        live.grant, live.ask = grant, ask
        self.store.set_refs(key, [v.attempt.ref for v in started])
        self._settle(key, deployment=deployment)

    def _settle(self, key: Key, failed: str | None = None, rollback: bool = False,
                deployment: dict[str, Any] | None = None) -> None:
        detail = self.store.get(key)
        if detail is None:
            return
        stamp = now()
        detail["LastModifiedTime"] = stamp
        if failed is not None:
            detail["FailureReason"] = failed
            detail["EndpointStatus"] = "InService" if rollback else "Failed"
            detail.pop("_Pending", None)
        else:
            assert deployment is not None
            detail.pop("FailureReason", None)
            detail["EndpointStatus"] = "InService"
            pending = detail.pop("_Pending", None)
            if pending:
                detail["EndpointConfigName"] = pending
            detail["_Deployment"] = deployment
            detail["ProductionVariants"] = [
                {"VariantName": name, "CurrentWeight": spec["Weight"],
                 "DesiredWeight": spec["Weight"], "CurrentInstanceCount": spec["Count"],
                 "DesiredInstanceCount": spec["Count"],
                 "DeployedImages": [{"SpecifiedImage": spec["Container"].get("Image", ""),
                                     "ResolvedImage": spec["Container"].get("Image", ""),
                                     "ResolutionTime": stamp}],
                 "VariantStatus": [{"Status": "ActivatingTraffic", "StartTime": stamp,
                                    "StatusMessage": ""}]}
                for name, spec in deployment.items()]
        self.store.update(key, detail, detail["EndpointStatus"])

    async def _start_variant(self, key: Key, detail: dict[str, Any], name: str,
                             spec: dict[str, Any], generation: str,
                             gpu_ids: tuple[str, ...] = ()) -> Variant:
        container: dict[str, Any] = spec["Container"]
        workdir = self._root(key) / f"{name}-{generation}"
        model_dir = workdir / "model"
        try:
            await serving.stage_model(self.s3, container, model_dir, workdir)
            server = await serving.launch(
                self.runtime, self.logs, Scope(key.account, key.region),
                f"/aws/sagemaker/Endpoints/{key.name}", f"{name}/i-{secrets.token_hex(8)}",
                container=container,
                env={MARKER: detail["EndpointArn"],
                     **gpu_environment(self.capacity.host, gpu_ids)},
                model_dir=model_dir, workdir=workdir,
                choice=self.placer.choose(container.get("Image")),
                timeout=float(spec.get("HealthCheckTimeout") or serving.PING_TIMEOUT),
                job_id=detail["EndpointArn"], gpu_ids=gpu_ids)
        except serving.ServeFailed as failed:
            if failed.stage == "download":
                raise DeployFailed(f"Failed to download model data for production variant "
                                   f"{name}: {failed}") from None
            if failed.stage == "start":
                raise DeployFailed(f"Production variant {name} failed to start: "
                                   f"{failed}") from None
            raise DeployFailed(f"The primary container for production variant {name} did not "
                               "pass the ping health check. Please check CloudWatch logs for "
                               "this endpoint.") from None
        return Variant(name, float(spec["Weight"]), server.port, server.attempt, server.pumping)

    # ------------------------------------------------------------ invoking

    def pick(self, key: Key, target: str | None) -> Variant | None:
        """The variant to serve a request: TargetVariant if given, else by weight."""
        live = self.live.get(key)
        if live is None or not live.variants:
            return None
        if target:
            return live.variants.get(target)
        variants = list(live.variants.values())
        weights = [v.weight for v in variants]
        if sum(weights) <= 0:
            return random.choice(variants)
        return random.choices(variants, weights=weights)[0]
