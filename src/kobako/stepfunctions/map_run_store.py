"""Durable Map Runs: one row per distributed Map state run, with its counts and limits.

A row is keyed for re-attachment by (execution, state, the state's Entered event id):
a parent resumed after `kill -9` finds its Map Run again instead of starting another.
A redriven parent finds the state's last unsuccessful Map Run (`last_unsuccessful`)
and redrives it, moving its key to the new Entered event.
"""

from __future__ import annotations

import json
from typing import Any

from kobako.store.db import Database, Row

SCHEMA = [
    """
    CREATE TABLE sfn_map_runs (
        arn TEXT PRIMARY KEY,
        execution_arn TEXT NOT NULL,
        state_name TEXT NOT NULL,
        entered INTEGER NOT NULL,
        machine_arn TEXT NOT NULL,
        status TEXT NOT NULL,
        started REAL NOT NULL,
        stopped REAL,
        max_concurrency INTEGER NOT NULL,
        tolerated_count INTEGER,
        tolerated_pct REAL,
        item_counts TEXT NOT NULL,
        execution_counts TEXT NOT NULL,
        error TEXT,
        cause TEXT
    );
    CREATE INDEX sfn_map_runs_by_execution ON sfn_map_runs (execution_arn, started)
    """,
    # Redrive: how often and when; `settled` keeps the EXPRESS children that succeeded
    # before the run failed (they have no execution rows), so a redrive skips them.
    """
    ALTER TABLE sfn_map_runs ADD COLUMN redrive_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sfn_map_runs ADD COLUMN redrived REAL;
    ALTER TABLE sfn_map_runs ADD COLUMN settled TEXT
    """,
]
COUNT_KEYS = ("pending", "running", "succeeded", "failed", "timedOut", "aborted", "total",
              "resultsWritten", "failuresNotRedrivable", "pendingRedrive")


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_KEYS, 0)


class MapRunStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("stepfunctions.map_runs", SCHEMA)

    def get(self, arn: str) -> Row | None:
        return self.db.one("SELECT * FROM sfn_map_runs WHERE arn = ?", (arn,))

    def find(self, execution_arn: str, state_name: str, entered: int) -> Row | None:
        return self.db.one("SELECT * FROM sfn_map_runs WHERE execution_arn = ? AND "
                           "state_name = ? AND entered = ?",
                           (execution_arn, state_name, entered))

    def last_unsuccessful(self, execution_arn: str, state_name: str) -> Row | None:
        return self.db.one("SELECT * FROM sfn_map_runs WHERE execution_arn = ? AND "
                           "state_name = ? ORDER BY started DESC, entered DESC LIMIT 1",
                           (execution_arn, state_name))

    def insert(self, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(f"INSERT INTO sfn_map_runs ({columns}) VALUES ({marks})",
                        tuple(row.values()))

    def update(self, arn: str, **changes: Any) -> None:
        for key in ("item_counts", "execution_counts"):
            if key in changes:
                changes[key] = json.dumps(changes[key])
        sets = ", ".join(f"{key} = ?" for key in changes)
        self.db.execute(f"UPDATE sfn_map_runs SET {sets} WHERE arn = ?",
                        (*changes.values(), arn))

    def of_execution(self, execution_arn: str, offset: int, limit: int) -> list[Row]:
        return self.db.query("SELECT * FROM sfn_map_runs WHERE execution_arn = ? "
                             "ORDER BY started, arn LIMIT ? OFFSET ?",
                             (execution_arn, limit, offset))
