"""AWS Batch: compute environments, queues, job definitions, and jobs that really run."""

from __future__ import annotations

from kobako.batch import definitions, environments, fairshare, jobs
from kobako.batch.engine import Engine
from kobako.batch.store import BatchStore
from kobako.config import Config
from kobako.logs.store import LogStore
from kobako.protocol.codecs import RestJsonCodec
from kobako.runtime.base import Runtime
from kobako.runtime.select import RuntimeSet
from kobako.server.service import Handler, Service
from kobako.spec import service_model
from kobako.store.db import Database

__all__ = ["BatchStore", "Engine", "build", "build_with_engine"]


def build(config: Config, db: Database, logs_store: LogStore,
          runtime: Runtime | None = None) -> Service:
    return build_with_engine(config, db, logs_store, runtime)[0]


def build_with_engine(config: Config, db: Database, logs_store: LogStore,
                      runtime: Runtime | None = None) -> tuple[Service, Engine]:
    """The service and its engine, whose host ledger other services share (SageMaker)."""
    store = BatchStore(db)
    # cheap: engines connect lazily
    runtimes = runtime if runtime is not None else RuntimeSet(config.runtime, config.data_dir)
    engine = Engine(store, runtimes, logs_store, config.data_dir / "batch" / "work")
    # The runtime set's start-up (engine ping, sweep of a previous run's containers) runs
    # once, here, also for the services that share it (SageMaker).
    opening = [runtimes.open_in_background] if isinstance(runtimes, RuntimeSet) else []
    handlers: dict[str, Handler] = {}
    handlers.update(environments.build_handlers(store, engine.changed))
    handlers.update(definitions.build_handlers(store))
    handlers.update(fairshare.build_handlers(store, engine.changed))
    handlers.update(jobs.build_handlers(store, engine))
    service = Service(
        name="batch",
        codec=RestJsonCodec(service_model("batch")),
        handlers=handlers,
        signing_names=("batch",),
        startup=[*opening, engine.start],
        shutdown=[engine.stop],
    )
    return service, engine
