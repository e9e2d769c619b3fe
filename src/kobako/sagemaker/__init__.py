"""SageMaker: training, processing and transform jobs that really run, endpoints that
really serve.

`build` returns two services on one store: `sagemaker` (the JSON control plane,
X-Amz-Target SageMaker.*) and `sagemaker-runtime` (InvokeEndpoint; the app routes
SigV4 scope 'sagemaker' without X-Amz-Target to it; InvokeEndpoint and
InvokeEndpointWithResponseStream). Input, outputs and model
artifacts go through kobako's S3 store in process. Jobs take their CPUs, memory and
GPUs from the ledger Batch's engine keeps (`ledger`), so both share one machine.

With the process runtime, a script-mode job (hyperparameter `sagemaker_program`) runs
its entry point with this server's Python, so the script's dependencies must be
installed there (or listed in the source's requirements.txt). Any other job runs
AlgorithmSpecification.ContainerEntrypoint (+ ContainerArguments) if given, else
`<TrainingImage>/train` when TrainingImage names a local directory, else `train`
from PATH: the `docker run <image> train` of AWS. With the container runtime (see
`placement`), real images run as containers with /opt/ml mounted; a multi-instance
training job's containers share a network of the job's own (hosts algo-1..N).
"""

from __future__ import annotations

from kobako.batch.engine import Host
from kobako.config import Config
from kobako.logs.store import LogStore
from kobako.protocol.codecs import JsonCodec, RestJsonCodec
from kobako.runtime.base import Runtime
from kobako.runtime.select import RuntimeSet
from kobako.s3.store import S3Store
from kobako.sagemaker import hosting_api, invoke, processing_api, training_api, transform_api
from kobako.sagemaker.capacity import Capacity, Ledger, LocalLedger
from kobako.sagemaker.endpoints import EndpointManager
from kobako.sagemaker.placement import Placer
from kobako.sagemaker.processing import ProcessingRunner
from kobako.sagemaker.store import SageMakerStore
from kobako.sagemaker.training import TrainingRunner
from kobako.sagemaker.transform import TransformRunner
from kobako.server.service import Handler, Service
from kobako.spec import service_model
from kobako.store.backends import open_blobs
from kobako.store.db import Database

__all__ = ["build"]


def build(config: Config, db: Database, logs_store: LogStore,
          runtime: Runtime | None = None, ledger: Ledger | None = None,
          s3_store: S3Store | None = None) -> list[Service]:
    """`s3_store` should be the S3 service's own: a second one opened while S3 serves
    would empty the blob temp directory under its uploads."""
    store = SageMakerStore(db)
    s3 = s3_store or S3Store(db, open_blobs(config, db))
    work = config.data_dir / "sagemaker"
    runtime = runtime or RuntimeSet(config.runtime, config.data_dir)
    capacity = Capacity(ledger or LocalLedger(Host.detect()))
    placer = Placer(config.runtime.sagemaker or config.runtime.default)
    runner = TrainingRunner(store, s3, logs_store, runtime, work / "training", capacity,
                            placer)
    processing = ProcessingRunner(store, s3, logs_store, runtime, work / "processing",
                                  capacity, placer)
    transform = TransformRunner(store, s3, logs_store, runtime, work / "transform", capacity,
                                placer)
    manager = EndpointManager(store, s3, logs_store, runtime, work / "endpoints", placer,
                              capacity)

    async def start() -> None:
        await runner.start()
        await processing.start()
        await transform.start()
        await manager.start()

    async def stop() -> None:
        await runner.stop()
        await processing.stop()
        await transform.stop()
        await manager.stop()
        await runtime.close()

    handlers: dict[str, Handler] = {}
    handlers.update(training_api.build_handlers(store, runner))
    handlers.update(processing_api.build_handlers(store, processing))
    handlers.update(transform_api.build_handlers(store, transform))
    handlers.update(hosting_api.build_handlers(store, manager))
    control = Service(name="sagemaker", codec=JsonCodec(service_model("sagemaker")),
                      handlers=handlers, signing_names=("sagemaker",),
                      startup=[start], shutdown=[stop])
    data = Service(name="sagemaker-runtime",
                   codec=RestJsonCodec(service_model("sagemaker-runtime")),
                   handlers=invoke.build_handlers(store, manager),
                   signing_names=("sagemaker-runtime",))
    return [control, data]
