"""Runs endpoints: one model-server process per production variant, health-checked.

Deploying a variant unpacks the model's ModelDataUrl (model.tar.gz from kobako's
S3) and, if the model names one, its SAGEMAKER_SUBMIT_DIRECTORY into model/code,
starts `model_server.py` on a free local port and polls GET /ping until it answers
200 (InService) or the process dies or the health-check timeout passes (Failed).
Endpoints the database calls InService are redeployed when the server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import random
import secrets
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kobako.logs.store import LogStore, Scope
from kobako.runtime.base import Attempt, AttemptSpec, Runtime, StartError
from kobako.s3.store import S3Store
from kobako.sagemaker import artifacts, model_server
from kobako.sagemaker.common import now
from kobako.sagemaker.logpump import pump
from kobako.sagemaker.store import ENDPOINT, Key, SageMakerStore

log = logging.getLogger("kobako.sagemaker")

MARKER = "KOBAKO_SAGEMAKER_ENDPOINT"
LIVE = ("Creating", "InService", "Updating", "SystemUpdating")
_PING_TIMEOUT = 300.0


class DeployFailed(Exception):
    """The variant could not be brought up; the message becomes FailureReason."""


@dataclass
class Variant:
    name: str
    weight: float
    port: int
    attempt: Attempt
    pumping: asyncio.Task[None]


@dataclass
class Live:
    """What serves one endpoint now, and the deployment in progress, if any."""

    variants: dict[str, Variant] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/ping")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def post(port: int, body: bytes, headers: dict[str, str], timeout: float
         ) -> tuple[int, bytes, str]:
    """POST /invocations; (status, body, content type)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/invocations", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        conn.close()


class EndpointManager:
    def __init__(self, store: SageMakerStore, s3: S3Store, logs: LogStore, runtime: Runtime,
                 work_root: Path) -> None:
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
        shutil.rmtree(self._root(key), ignore_errors=True)

    async def _kill(self, variants: list[Variant]) -> None:
        for variant in variants:
            await variant.attempt.kill()
            with contextlib.suppress(Exception):
                await variant.attempt.wait()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await variant.pumping

    def _root(self, key: Key) -> Path:
        return self.work_root / f"{key.account}-{key.region}-{key.name}"

    # ------------------------------------------------------------ deploying

    async def _deploy(self, key: Key, detail: dict[str, Any], deployment: dict[str, Any]
                      ) -> None:
        """Start every variant, then swap them in; a failed update keeps the old ones."""
        started: list[Variant] = []
        generation = secrets.token_hex(4)
        try:
            for name, spec in deployment.items():
                started.append(await self._start_variant(key, detail, name, spec, generation))
        except asyncio.CancelledError:
            await self._kill(started)
            raise
        except Exception as error:
            await self._kill(started)
            reason = str(error) if isinstance(error, DeployFailed) else \
                f"InternalServerError: {error}"
            if not isinstance(error, DeployFailed):
                log.exception("deploying endpoint %s failed", key.name)
            serving = self.live.get(key)
            self._settle(key, failed=reason, rollback=bool(serving and serving.variants))
            return
        live = self.live.setdefault(key, Live())
        old = list(live.variants.values())
        live.variants = {v.name: v for v in started}
        await self._kill(old)
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
                             spec: dict[str, Any], generation: str) -> Variant:
        container: dict[str, Any] = spec["Container"]
        workdir = self._root(key) / f"{name}-{generation}"
        model_dir = workdir / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        env = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
        try:
            if container.get("ModelDataUrl"):
                await asyncio.to_thread(artifacts.fetch_tarball, self.s3,
                                        str(container["ModelDataUrl"]), model_dir,
                                        workdir / "model.tar.gz")
            submit = env.get("SAGEMAKER_SUBMIT_DIRECTORY")
            if submit and (submit.startswith("s3://") or Path(submit).exists()):
                await asyncio.to_thread(artifacts.fetch_tarball, self.s3, submit,
                                        model_dir / "code", workdir / "sourcedir.tar.gz")
        except (artifacts.S3Missing, OSError, ValueError) as error:
            raise DeployFailed(f"Failed to download model data for production variant {name}: "
                               f"{error}") from None
        port = free_port()
        env.update({MARKER: detail["EndpointArn"], "SAGEMAKER_BIND_TO_PORT": str(port),
                    "SM_MODEL_DIR": str(model_dir), "PYTHONUNBUFFERED": "1"})
        argv = [sys.executable, str(Path(model_server.__file__)), "--model-dir", str(model_dir),
                "--port", str(port)]
        try:
            attempt = await self.runtime.start(AttemptSpec(
                argv=argv, env=env, workdir=workdir, image=container.get("Image"),
                runtime="process"))
        except StartError as error:
            raise DeployFailed(f"Production variant {name} failed to start: "
                               f"{error.reason}") from None
        stream = f"{name}/i-{secrets.token_hex(8)}"
        group = f"/aws/sagemaker/Endpoints/{key.name}"
        pumping = asyncio.create_task(pump(attempt, self.logs, Scope(key.account, key.region),
                                           group, stream))
        variant = Variant(name, float(spec["Weight"]), port, attempt, pumping)
        timeout = float(spec.get("HealthCheckTimeout") or _PING_TIMEOUT)
        exited = asyncio.ensure_future(attempt.wait())
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                if await asyncio.to_thread(_ping, port):
                    return variant
                if exited.done() or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
        except BaseException:
            await self._kill([variant])
            raise
        await self._kill([variant])
        raise DeployFailed(f"The primary container for production variant {name} did not pass "
                           "the ping health check. Please check CloudWatch logs for this "
                           "endpoint.")

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
