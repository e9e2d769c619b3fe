"""Assemble the ASGI app from a config: the store, S3, then every other service.

S3 is built before the server listens; the other services are built and started just
after (see `kobako.server.deferred`): their modules, models and recovery are most of
a start, and S3's first answer needs none of them. Their modules are imported inside
`_build_deferred` for that reason.
"""

from __future__ import annotations

from kobako import s3
from kobako.config import Config
from kobako.s3.store import S3Store
from kobako.server.app import KobakoApp
from kobako.server.deferred import DeferredServices
from kobako.server.service import Service
from kobako.store.backends import open_blobs
from kobako.store.db import Database

# The SigV4 scope names of the services `_build_deferred` builds: a request that names
# one waits for them instead of being refused as a service kobako does not serve.
DEFERRED_SIGNING_NAMES = ("sts", "iam", "logs", "batch", "states", "sagemaker",
                          "sagemaker-runtime")


def build_app(config: Config) -> KobakoApp:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.data_dir / "kobako.db")
    # One S3 store for S3 and SageMaker: opening a second would empty the blob temp
    # directory under uploads S3 may already be streaming.
    s3_store = S3Store(db, open_blobs(config, db), config.inline_bytes)
    s3_service = s3.service.build(config, db, s3_store)
    return KobakoApp(config, [s3_service], DeferredServices(
        DEFERRED_SIGNING_NAMES, lambda: _build_deferred(config, db, s3_service, s3_store)))


def _build_deferred(config: Config, db: Database, s3_service: Service,
                    s3_store: S3Store) -> list[Service]:
    """Every service but S3, in the order their start-up hooks run (run in a thread)."""
    from kobako import batch, iam, logs, sagemaker, stepfunctions, sts
    from kobako.runtime.select import RuntimeSet

    # One runtime set for every service that runs work: its start-up sweep removes the
    # containers a previous run left, and must know every container this run starts.
    runtimes = RuntimeSet(config.runtime, config.data_dir)
    batch_service, engine = batch.build_with_engine(config, db, logs.LogStore(db), runtimes)
    services = [
        sts.build(),
        iam.build(config, db),
        logs.build(config, db),
        batch_service,
        stepfunctions.build(config, db),
        # SageMaker places its jobs in Batch's host ledger: one machine, one set of books.
        *sagemaker.build(config, db, logs.LogStore(db), runtimes, ledger=engine,
                         s3_store=s3_store),
    ]
    stepfunctions.connect(config, [s3_service, *services])  # Task integrations in-process
    return services
