"""Bringing up one model server (inference contract) for an endpoint variant or a
batch transform: stage model data, start the server, wait for GET /ping.

Endpoints and transform jobs share this so that a model behaves the same whether it
is invoked online or over an S3 prefix. The server is kobako's `model_server.py`
(framework inference contract) under the process runtime, which also shows it the
model at /opt/ml/model where it may (handlers such as the SDK 3.x inference.py read
that path), or the image's own `serve` under the container runtime (see `placement`).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kobako.logs.store import LogStore, Scope
from kobako.runtime.base import Attempt, AttemptSpec, Runtime, StartError
from kobako.s3.store import S3Store
from kobako.sagemaker import artifacts, model_server, placement
from kobako.sagemaker.logpump import pump

PING_TIMEOUT = 300.0


class ServeFailed(Exception):
    """The server could not be brought up; `stage` says where (download, start, ping)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass
class ModelServer:
    port: int
    attempt: Attempt
    pumping: asyncio.Task[None]

    async def close(self) -> None:
        await self.attempt.kill()
        with contextlib.suppress(Exception):
            await self.attempt.wait()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.pumping


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int) -> bool:
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


async def stage_model(s3: S3Store, container: dict[str, Any], model_dir: Path,
                      workdir: Path) -> None:
    """ModelDataUrl (and SAGEMAKER_SUBMIT_DIRECTORY into code/) unpacked into model_dir."""
    model_dir.mkdir(parents=True, exist_ok=True)
    env = container.get("Environment") or {}
    try:
        if container.get("ModelDataUrl"):
            await asyncio.to_thread(artifacts.fetch_tarball, s3, str(container["ModelDataUrl"]),
                                    model_dir, workdir / "model.tar.gz")
        submit = str(env.get("SAGEMAKER_SUBMIT_DIRECTORY") or "")
        if submit and (submit.startswith("s3://") or Path(submit).exists()):
            await asyncio.to_thread(artifacts.fetch_tarball, s3, submit, model_dir / "code",
                                    workdir / "sourcedir.tar.gz")
    except (artifacts.S3Missing, OSError, ValueError) as error:
        raise ServeFailed("download", str(error)) from None


async def launch(runtime: Runtime, logs: LogStore, scope: Scope, group: str, stream: str, *,
                 container: dict[str, Any], env: dict[str, str], model_dir: Path,
                 workdir: Path, choice: placement.Placement,
                 timeout: float = PING_TIMEOUT, job_id: str = "",
                 gpu_ids: tuple[str, ...] = ()) -> ModelServer:
    """Start the model server for `container` and return once it answers /ping;
    `job_id` (an ARN) labels its container, so a restarted server can reap it;
    `gpu_ids` are the devices its capacity grant holds (a container gets just those)."""
    image = container.get("Image")
    env = {**{str(k): str(v) for k, v in (container.get("Environment") or {}).items()}, **env}
    # The region the endpoint runs in, as AWS's hosting containers have it: code in the
    # model (the SDK 3.x inference.py among it) builds boto3 clients at import.
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        env.setdefault(name, scope.region)
    if choice.runtime == "container":
        port = free_port()
        spec = AttemptSpec(argv=["serve"], env=env, workdir=workdir, image=image,
                           runtime="container", options={"job_id": job_id},
                           gpus=len(gpu_ids), gpu_ids=gpu_ids,
                           properties=placement.container_properties(
                               workdir, {model_dir: "/opt/ml/model"}, {8080: port}))
    else:
        port = free_port()
        env.update({"SAGEMAKER_BIND_TO_PORT": str(port), "SM_MODEL_DIR": str(model_dir),
                    "PYTHONUNBUFFERED": "1"})
        argv = [sys.executable, str(Path(model_server.__file__)), "--model-dir",
                str(model_dir), "--port", str(port)]
        spec = AttemptSpec(argv=argv, env=env, workdir=workdir, image=image, runtime="process",
                           gpus=len(gpu_ids), gpu_ids=gpu_ids,
                           binds=((model_dir, f"{placement.OPT_ML}/model"),))
    try:
        attempt = await runtime.start(spec)
    except StartError as error:
        raise ServeFailed("start", error.reason) from None
    server = ModelServer(port, attempt, asyncio.create_task(
        pump(attempt, logs, scope, group, stream)))
    exited = asyncio.ensure_future(attempt.wait())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            if await asyncio.to_thread(ping, port):
                return server
            if exited.done() or loop.time() > deadline:
                break
            await asyncio.sleep(0.1)
    except BaseException:
        await server.close()
        raise
    await server.close()
    raise ServeFailed("ping", "the model server did not pass the ping health check")
