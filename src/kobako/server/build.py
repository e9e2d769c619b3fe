"""Assemble the ASGI app from a config: the store, then every service on it."""

from __future__ import annotations

from kobako import batch, logs, s3, sagemaker, stepfunctions, sts
from kobako.config import Config
from kobako.server.app import KobakoApp
from kobako.store.db import Database


def build_app(config: Config) -> KobakoApp:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.data_dir / "kobako.db")
    services = [
        s3.service.build(config, db),
        sts.build(),
        logs.build(config, db),
        batch.build(config, db, logs.LogStore(db)),
        stepfunctions.build(config, db),
        *sagemaker.build(config, db, logs.LogStore(db)),
    ]
    stepfunctions.connect(config, services)  # Task integrations call peers in-process
    return KobakoApp(config, services)
