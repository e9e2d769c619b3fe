"""SageMaker: training jobs that really run, and endpoints that really serve.

`build` returns two services on one store: `sagemaker` (the JSON control plane,
X-Amz-Target SageMaker.*) and `sagemaker-runtime` (InvokeEndpoint; the app routes
SigV4 scope 'sagemaker' without X-Amz-Target to it). Training input and model
artifacts go through kobako's S3 store in process.

With the process runtime, a script-mode job (hyperparameter `sagemaker_program`) runs
its entry point with this server's Python, so the script's dependencies must be
installed there. Any other job runs AlgorithmSpecification.ContainerEntrypoint (+
ContainerArguments) if given, else `<TrainingImage>/train` when TrainingImage names a
local directory, else `train` from PATH: the `docker run <image> train` of AWS.
Only host algo-1 runs, whatever the InstanceCount.
"""

from __future__ import annotations

from kobako.batch.engine import Host
from kobako.config import Config
from kobako.logs.store import LogStore
from kobako.protocol.codecs import JsonCodec, RestJsonCodec
from kobako.runtime.base import Runtime
from kobako.runtime.process import ProcessRuntime
from kobako.s3.store import S3Store
from kobako.sagemaker import hosting_api, invoke, training_api
from kobako.sagemaker.capacity import Capacity
from kobako.sagemaker.endpoints import EndpointManager
from kobako.sagemaker.store import SageMakerStore
from kobako.sagemaker.training import TrainingRunner
from kobako.server.service import Handler, Service
from kobako.spec import service_model
from kobako.store.blobs import BlobStore
from kobako.store.db import Database

__all__ = ["build"]


def build(config: Config, db: Database, logs_store: LogStore,
          runtime: Runtime | None = None) -> list[Service]:
    store = SageMakerStore(db)
    s3 = S3Store(db, BlobStore(config.data_dir / "s3", fsync=config.fsync))
    work = config.data_dir / "sagemaker"
    runtime = runtime or ProcessRuntime()
    runner = TrainingRunner(store, s3, logs_store, runtime, work / "training",
                            Capacity(Host.detect()))
    manager = EndpointManager(store, s3, logs_store, runtime, work / "endpoints")

    async def start() -> None:
        await runner.start()
        await manager.start()

    async def stop() -> None:
        await runner.stop()
        await manager.stop()
        await runtime.close()

    handlers: dict[str, Handler] = {}
    handlers.update(training_api.build_handlers(store, runner))
    handlers.update(hosting_api.build_handlers(store, manager))
    control = Service(name="sagemaker", codec=JsonCodec(service_model("sagemaker")),
                      handlers=handlers, signing_names=("sagemaker",),
                      startup=[start], shutdown=[stop])
    data = Service(name="sagemaker-runtime",
                   codec=RestJsonCodec(service_model("sagemaker-runtime")),
                   handlers=invoke.build_handlers(store, manager),
                   signing_names=("sagemaker-runtime",))
    return [control, data]
