"""SageMaker's durable state: one SQLite table of resources, each a JSON document.

Every resource (training job, model, endpoint config, endpoint) is keyed by kind,
account, region and name; its describe-shaped document lives in `detail`, so the
API answers straight from it and a restart loses nothing. `runtime_refs` holds the
process handles of a job or endpoint, so a restarted server can reap what the dead
one left running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kobako.sagemaker.common import dumps, loads
from kobako.store.db import Database

SCHEMA = [
    """
    CREATE TABLE sagemaker_resources (
        kind TEXT NOT NULL,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT,
        detail TEXT NOT NULL,
        runtime_refs TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (kind, account, region, name)
    ) WITHOUT ROWID;
    CREATE INDEX sagemaker_resources_by_status ON sagemaker_resources (kind, status)
    """
]

TRAINING = "training-job"
MODEL = "model"
CONFIG = "endpoint-config"
ENDPOINT = "endpoint"
PROCESSING = "processing-job"
TRANSFORM = "transform-job"


@dataclass(frozen=True)
class Key:
    kind: str
    account: str
    region: str
    name: str


class SageMakerStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("sagemaker", SCHEMA)

    def insert(self, key: Key, detail: dict[str, Any], status: str | None = None) -> bool:
        """Insert a new resource; False if one of that kind and name exists (case-blind)."""
        with self.db.transaction():
            if self.get(key) is not None:
                return False
            self.db.execute(
                "INSERT INTO sagemaker_resources (kind, account, region, name, status, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key.kind, key.account, key.region, key.name, status, dumps(detail)),
            )
        return True

    def get(self, key: Key) -> dict[str, Any] | None:
        """Names are unique regardless of case in SageMaker, so lookups ignore case."""
        row = self.db.one(
            "SELECT detail FROM sagemaker_resources WHERE kind = ? AND account = ? "
            "AND region = ? AND lower(name) = lower(?)",
            (key.kind, key.account, key.region, key.name),
        )
        return dict(loads(row["detail"])) if row else None

    def fields(self, key: Key, *paths: str) -> tuple[Any, ...] | None:
        """Some fields of a resource's document (JSON paths such as '$.EndpointStatus'),
        extracted by SQLite: InvokeEndpoint needs two fields of an endpoint on every
        call, and decoding its whole document in Python cost more than the query."""
        columns = ", ".join("json_extract(detail, ?)" for _ in paths)
        row = self.db.one(
            f"SELECT {columns} FROM sagemaker_resources WHERE kind = ? AND account = ? "
            "AND region = ? AND lower(name) = lower(?)",
            (*paths, key.kind, key.account, key.region, key.name),
        )
        return tuple(row) if row else None

    def update(self, key: Key, detail: dict[str, Any], status: str | None = None) -> None:
        self.db.execute(
            "UPDATE sagemaker_resources SET detail = ?, status = ? WHERE kind = ? AND "
            "account = ? AND region = ? AND lower(name) = lower(?)",
            (dumps(detail), status, key.kind, key.account, key.region, key.name),
        )

    def delete(self, key: Key) -> bool:
        return self.db.execute(
            "DELETE FROM sagemaker_resources WHERE kind = ? AND account = ? AND region = ? "
            "AND lower(name) = lower(?)",
            (key.kind, key.account, key.region, key.name),
        ) == 1

    def all(self, kind: str, account: str, region: str) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT detail FROM sagemaker_resources WHERE kind = ? AND account = ? "
            "AND region = ?", (kind, account, region))
        return [dict(loads(r["detail"])) for r in rows]

    def with_status(self, kind: str, statuses: tuple[str, ...]) -> list[tuple[Key, dict[str, Any],
                                                                              list[str]]]:
        """Resources of `kind` in any account whose status is one of `statuses`."""
        marks = ",".join("?" for _ in statuses)
        rows = self.db.query(
            f"SELECT * FROM sagemaker_resources WHERE kind = ? AND status IN ({marks})",
            (kind, *statuses))
        return [(Key(r["kind"], r["account"], r["region"], r["name"]), dict(loads(r["detail"])),
                 list(loads(r["runtime_refs"]) or [])) for r in rows]

    def set_refs(self, key: Key, refs: list[str]) -> None:
        self.db.execute(
            "UPDATE sagemaker_resources SET runtime_refs = ? WHERE kind = ? AND account = ? "
            "AND region = ? AND lower(name) = lower(?)",
            (dumps(refs), key.kind, key.account, key.region, key.name),
        )
