"""Assemble the ASGI app from a config: the store, then every service on it."""

from __future__ import annotations

from kobako import batch, iam, logs, s3, sagemaker, stepfunctions, sts
from kobako.config import Config
from kobako.runtime.select import RuntimeSet
from kobako.server.app import KobakoApp
from kobako.store.db import Database


def build_app(config: Config) -> KobakoApp:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.data_dir / "kobako.db")
    # One runtime set for every service that runs work: its start-up sweep removes the
    # containers a previous run left, and must know every container this run starts.
    runtimes = RuntimeSet(config.runtime, config.data_dir)
    batch_service, engine = batch.build_with_engine(config, db, logs.LogStore(db), runtimes)
    services = [
        s3.service.build(config, db),
        sts.build(),
        iam.build(config, db),
        logs.build(config, db),
        batch_service,
        stepfunctions.build(config, db),
        # SageMaker places its jobs in Batch's host ledger: one machine, one set of books.
        *sagemaker.build(config, db, logs.LogStore(db), runtimes, ledger=engine),
    ]
    stepfunctions.connect(config, services)  # Task integrations call peers in-process
    return KobakoApp(config, services)
