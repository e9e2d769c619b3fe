"""CloudWatch Logs: groups, streams, events; also the sink for Batch job output."""

from __future__ import annotations

from kobako.config import Config
from kobako.logs.handlers import build_handlers
from kobako.logs.store import LogStore, Scope
from kobako.protocol.codecs import JsonCodec
from kobako.server.service import Service
from kobako.spec import service_model
from kobako.store.db import Database

__all__ = ["LogStore", "Scope", "build", "build_with_store"]


def build_with_store(config: Config, db: Database) -> tuple[Service, LogStore]:
    """The Logs service and its store, so other services can write into the same logs."""
    store = LogStore(db)
    service = Service(
        name="logs",
        codec=JsonCodec(service_model("logs")),
        handlers=build_handlers(store),
        signing_names=("logs",),
    )
    return service, store


def build(config: Config, db: Database) -> Service:
    return build_with_store(config, db)[0]
