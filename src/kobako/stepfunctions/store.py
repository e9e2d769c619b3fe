"""Step Functions' durable state: state machines, executions, history, tags.

Every history event is its own committed row, written with the execution's cursor
(where its top-level run stands) in one transaction, so a killed server resumes each
RUNNING execution from its last recorded event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kobako.stepfunctions.engine import Cursor
from kobako.stepfunctions.errors import RUNTIME, StatesError
from kobako.store.db import Database, Row

SCHEMA = [
    """
    CREATE TABLE sfn_state_machines (
        arn TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        account_id TEXT NOT NULL,
        region TEXT NOT NULL,
        definition TEXT NOT NULL,
        role_arn TEXT NOT NULL,
        type TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        revision_id TEXT NOT NULL,
        options TEXT NOT NULL
    );
    CREATE TABLE sfn_executions (
        arn TEXT PRIMARY KEY,
        machine_arn TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        type TEXT NOT NULL,
        definition TEXT NOT NULL,
        role_arn TEXT NOT NULL,
        input TEXT NOT NULL,
        output TEXT,
        error TEXT,
        cause TEXT,
        started REAL NOT NULL,
        stopped REAL,
        cursor TEXT,
        last_event INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sfn_executions_by_machine ON sfn_executions (machine_arn, started);
    CREATE INDEX sfn_executions_by_status ON sfn_executions (status);
    CREATE TABLE sfn_events (
        execution_arn TEXT NOT NULL,
        id INTEGER NOT NULL,
        previous_id INTEGER NOT NULL,
        timestamp REAL NOT NULL,
        type TEXT NOT NULL,
        details TEXT,
        PRIMARY KEY (execution_arn, id)
    ) WITHOUT ROWID;
    CREATE TABLE sfn_tags (
        resource_arn TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (resource_arn, key)
    ) WITHOUT ROWID
    """,
    # RedriveExecution: how often and when; a failed run keeps its cursor to redrive from.
    """
    ALTER TABLE sfn_executions ADD COLUMN redrive_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sfn_executions ADD COLUMN redrived REAL
    """,
    # Distributed Map: the Map Run that started a child execution.
    """
    ALTER TABLE sfn_executions ADD COLUMN map_run_arn TEXT;
    CREATE INDEX sfn_executions_by_map_run ON sfn_executions (map_run_arn, started)
    """,
]


# (type, details, previous event id, timestamp, cursor) of an event not yet written
PendingEvent = tuple[str, dict[str, Any] | None, int, float, Cursor | None]
HISTORY_LIMIT = 25_000  # events in one execution's history (AWS's hard quota)
HISTORY_CAUSE = "The execution reached the maximum number of history events (25000)."


class NotRunning(Exception):
    """The execution was stopped (or finished) while its run was still going."""


@dataclass
class Event:
    id: int
    previous_id: int
    timestamp: float
    type: str
    details: dict[str, Any] | None


class SfnStore:
    # append() records a *StateEntered cursor with its own event id (see Recorder).
    resolves_entered = True
    history_limit = HISTORY_LIMIT

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("stepfunctions", SCHEMA)

    # ---------------------------------------------------------------- machines

    def machine(self, arn: str) -> Row | None:
        return self.db.one("SELECT * FROM sfn_state_machines WHERE arn = ?", (arn,))

    def put_machine(self, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(f"INSERT INTO sfn_state_machines ({columns}) VALUES ({marks})",
                        tuple(row.values()))

    def update_machine(self, arn: str, changes: dict[str, Any]) -> None:
        sets = ", ".join(f"{key} = ?" for key in changes)
        self.db.execute(f"UPDATE sfn_state_machines SET {sets} WHERE arn = ?",
                        (*changes.values(), arn))

    def delete_machine(self, arn: str) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM sfn_state_machines WHERE arn = ?", (arn,))
            self.db.execute("DELETE FROM sfn_tags WHERE resource_arn = ?", (arn,))

    def machines(self, account_id: str, region: str, after: str, limit: int) -> list[Row]:
        return self.db.query(
            "SELECT * FROM sfn_state_machines WHERE account_id = ? AND region = ? AND name > ? "
            "ORDER BY name LIMIT ?", (account_id, region, after, limit))

    # ---------------------------------------------------------------- executions

    def execution(self, arn: str) -> Row | None:
        return self.db.one("SELECT * FROM sfn_executions WHERE arn = ?", (arn,))

    def create_execution(self, row: dict[str, Any], started_event: dict[str, Any]) -> None:
        """Insert the execution with its ExecutionStarted event, atomically."""
        with self.db.transaction():
            columns = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            self.db.execute(f"INSERT INTO sfn_executions ({columns}) VALUES ({marks})",
                            tuple(row.values()))
            self._append(row["arn"], "ExecutionStarted", started_event, 0, row["started"])

    def executions(self, machine_arn: str, status: str | None, offset: int,
                   limit: int, map_run: bool = False) -> list[Row]:
        """A machine's executions, or with `map_run` a Map Run's child executions."""
        sql = "SELECT * FROM sfn_executions WHERE " + \
            ("map_run_arn = ?" if map_run else "machine_arn = ?")
        params: list[Any] = [machine_arn]
        if status:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY started DESC, arn LIMIT ? OFFSET ?"
        return self.db.query(sql, (*params, limit, offset))

    def running(self) -> list[Row]:
        return self.db.query("SELECT * FROM sfn_executions WHERE status = 'RUNNING' "
                             "ORDER BY started")

    def _append(self, arn: str, type: str, details: dict[str, Any] | None, previous: int,
                now: float) -> int:
        row = self.db.one("SELECT last_event FROM sfn_executions WHERE arn = ?", (arn,))
        event_id = int(row["last_event"]) + 1 if row else 1
        self.db.execute(
            "INSERT INTO sfn_events (execution_arn, id, previous_id, timestamp, type, details) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (arn, event_id, previous, now, type, json.dumps(details) if details else None))
        self.db.execute("UPDATE sfn_executions SET last_event = ? WHERE arn = ?",
                        (event_id, arn))
        return event_id

    def append(self, arn: str, type: str, details: dict[str, Any] | None, previous: int,
               now: float, cursor: Cursor | None = None) -> int:
        """One event of a RUNNING execution (NotRunning once it was stopped)."""
        return self.append_batch(arn, [(type, details, previous, now, cursor)])[-1]

    def append_batch(self, arn: str, events: list[PendingEvent]) -> list[int]:
        """Events of a RUNNING execution in one transaction (a state's Exited event with
        the next state's Entered event); the last cursor given becomes the execution's."""
        with self.db.transaction():
            row = self.db.one("SELECT status, last_event FROM sfn_executions WHERE arn = ?",
                              (arn,))
            if row is None or row["status"] != "RUNNING":
                raise NotRunning(arn)
            event_id = int(row["last_event"])
            ids: list[int] = []
            latest: Cursor | None = None
            full = False
            for type, details, previous, now, cursor in events:
                if event_id + 1 >= self.history_limit:  # the last is for ExecutionFailed
                    full = True
                    break
                event_id += 1
                self.db.execute(
                    "INSERT INTO sfn_events (execution_arn, id, previous_id, timestamp, "
                    "type, details) VALUES (?, ?, ?, ?, ?, ?)",
                    (arn, event_id, previous, now, type,
                     json.dumps(details) if details else None))
                ids.append(event_id)
                if cursor is not None:
                    if cursor.entered == -1:  # the cursor of this very *StateEntered event
                        cursor.entered = event_id
                    latest = cursor
            if latest is None:
                self.db.execute("UPDATE sfn_executions SET last_event = ? WHERE arn = ?",
                                (event_id, arn))
            else:
                self.db.execute("UPDATE sfn_executions SET last_event = ?, cursor = ? "
                                "WHERE arn = ?", (event_id, latest.to_json(), arn))
        if full:  # the events before the limit are kept
            raise StatesError(RUNTIME, HISTORY_CAUSE)
        return ids

    def checkpoint(self, arn: str, cursor: Cursor) -> None:
        self.db.execute("UPDATE sfn_executions SET cursor = ? WHERE arn = ? AND status = "
                        "'RUNNING'", (cursor.to_json(), arn))

    def finish(self, arn: str, status: str, event: str, details: dict[str, Any] | None,
               now: float, output: str | None = None, error: str | None = None,
               cause: str | None = None) -> bool:
        """Close a RUNNING execution with its final event; False when it was not running."""
        with self.db.transaction():
            row = self.db.one("SELECT status, last_event FROM sfn_executions WHERE arn = ?",
                              (arn,))
            if row is None or row["status"] != "RUNNING":
                return False
            self._append(arn, event, details, int(row["last_event"]), now)
            self.db.execute(
                "UPDATE sfn_executions SET status = ?, stopped = ?, output = ?, error = ?, "
                "cause = ?, cursor = CASE WHEN ? THEN NULL ELSE cursor END WHERE arn = ?",
                (status, now, output, error, cause, status == "SUCCEEDED", arn))
            return True

    def redrive(self, arn: str, cursor: Cursor, now: float) -> int | None:
        """Make a failed, timed-out or aborted execution RUNNING again from `cursor`,
        with its ExecutionRedriven event; the new redrive count, or None if it was not
        in a redrivable status any more."""
        with self.db.transaction():
            row = self.db.one("SELECT status, last_event, redrive_count FROM sfn_executions "
                              "WHERE arn = ?", (arn,))
            if row is None or row["status"] not in ("FAILED", "TIMED_OUT", "ABORTED"):
                return None
            count = int(row["redrive_count"]) + 1
            self.db.execute(
                "UPDATE sfn_executions SET status = 'RUNNING', stopped = NULL, output = NULL, "
                "error = NULL, cause = NULL, cursor = ?, redrive_count = ?, redrived = ? "
                "WHERE arn = ?", (cursor.to_json(), count, now, arn))
            self._append(arn, "ExecutionRedriven", {"redriveCount": count},
                         int(row["last_event"]), now)
            return count

    def events(self, arn: str) -> list[Event]:
        return [
            Event(int(r["id"]), int(r["previous_id"]), float(r["timestamp"]), str(r["type"]),
                  json.loads(r["details"]) if r["details"] else None)
            for r in self.db.query(
                "SELECT * FROM sfn_events WHERE execution_arn = ? ORDER BY id", (arn,))
        ]

    # ---------------------------------------------------------------- tags

    def tags(self, arn: str) -> list[Row]:
        return self.db.query("SELECT key, value FROM sfn_tags WHERE resource_arn = ? "
                             "ORDER BY key", (arn,))

    def tag(self, arn: str, tags: dict[str, str]) -> None:
        self.db.executemany(
            "INSERT INTO sfn_tags (resource_arn, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (resource_arn, key) DO UPDATE SET value = excluded.value",
            [(arn, k, v) for k, v in tags.items()])

    def untag(self, arn: str, keys: list[str]) -> None:
        self.db.executemany("DELETE FROM sfn_tags WHERE resource_arn = ? AND key = ?",
                            [(arn, k) for k in keys])
