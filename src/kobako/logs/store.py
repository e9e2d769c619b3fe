"""CloudWatch Logs' durable state: groups, streams and events in SQLite. No HTTP here.

`LogStore` is also the in-process API other services (Batch) write through:
`append()` creates the group and stream on first use, so a job's output lands in
Logs without a round trip through the wire protocol.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from kobako.protocol.errors import AwsError
from kobako.store.db import Database, Row

SCHEMA = [
    """
    CREATE TABLE logs_groups (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        created INTEGER NOT NULL,
        retention INTEGER,
        kms_key TEXT,
        log_class TEXT NOT NULL DEFAULT 'STANDARD',
        UNIQUE (account, region, name)
    );
    CREATE TABLE logs_streams (
        id INTEGER PRIMARY KEY,
        group_id INTEGER NOT NULL REFERENCES logs_groups (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        created INTEGER NOT NULL,
        first_ts INTEGER,
        last_ts INTEGER,
        last_ingest INTEGER,
        stored_bytes INTEGER NOT NULL DEFAULT 0,
        UNIQUE (group_id, name)
    );
    CREATE TABLE logs_events (
        id INTEGER PRIMARY KEY,
        group_id INTEGER NOT NULL REFERENCES logs_groups (id) ON DELETE CASCADE,
        stream_id INTEGER NOT NULL REFERENCES logs_streams (id) ON DELETE CASCADE,
        ts INTEGER NOT NULL,
        ingest INTEGER NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX logs_events_by_stream ON logs_events (stream_id, ts, id);
    CREATE INDEX logs_events_by_group ON logs_events (group_id, ts, id)
    """
]


def now_ms() -> int:
    return int(time.time() * 1000)


def not_found(what: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"The specified {what} does not exist.")


def invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


@dataclass(frozen=True)
class Scope:
    """Whose logs: every name is unique within one account and region."""

    account: str
    region: str


@dataclass(frozen=True)
class Event:
    id: int
    stream: str
    timestamp: int
    ingestion: int
    message: str


class LogStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("logs", SCHEMA)

    # ------------------------------------------------------------ groups

    def create_group(
        self, scope: Scope, name: str, kms_key: str | None = None, log_class: str | None = None
    ) -> None:
        with self.db.transaction():
            if self._group_row(scope, name) is not None:
                raise AwsError(
                    "ResourceAlreadyExistsException", "The specified log group already exists"
                )
            self.db.execute(
                "INSERT INTO logs_groups (account, region, name, created, kms_key, log_class) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (scope.account, scope.region, name, now_ms(), kms_key, log_class or "STANDARD"),
            )

    def delete_group(self, scope: Scope, name: str) -> None:
        changed = self.db.execute(
            "DELETE FROM logs_groups WHERE account = ? AND region = ? AND name = ?",
            (scope.account, scope.region, name),
        )
        if not changed:
            raise not_found("log group")

    def set_retention(self, scope: Scope, name: str, days: int | None) -> None:
        changed = self.db.execute(
            "UPDATE logs_groups SET retention = ? WHERE account = ? AND region = ? AND name = ?",
            (days, scope.account, scope.region, name),
        )
        if not changed:
            raise not_found("log group")

    def list_groups(
        self, scope: Scope, prefix: str = "", pattern: str = "", after: str = "", limit: int = 50
    ) -> list[Row]:
        """Groups by name after `after` (the page token), with their stored bytes."""
        sql = (
            "SELECT g.*, (SELECT COALESCE(SUM(s.stored_bytes), 0) FROM logs_streams s "
            "WHERE s.group_id = g.id) AS stored FROM logs_groups g "
            "WHERE g.account = ? AND g.region = ? AND g.name > ? AND substr(g.name, 1, ?) = ? "
        )
        params: list[object] = [scope.account, scope.region, after, len(prefix), prefix]
        if pattern:
            sql += "AND instr(lower(g.name), lower(?)) > 0 "
            params.append(pattern)
        sql += "ORDER BY g.name LIMIT ?"
        params.append(limit)
        return self.db.query(sql, params)

    def _group_row(self, scope: Scope, name: str) -> Row | None:
        return self.db.one(
            "SELECT * FROM logs_groups WHERE account = ? AND region = ? AND name = ?",
            (scope.account, scope.region, name),
        )

    def group_id(self, scope: Scope, name: str) -> int:
        row = self._group_row(scope, name)
        if row is None:
            raise not_found("log group")
        return int(row["id"])

    # ------------------------------------------------------------ streams

    def create_stream(self, scope: Scope, group: str, name: str) -> None:
        with self.db.transaction():
            group_id = self.group_id(scope, group)
            if self._stream_row(group_id, name) is not None:
                raise AwsError(
                    "ResourceAlreadyExistsException", "The specified log stream already exists"
                )
            self.db.execute(
                "INSERT INTO logs_streams (group_id, name, created) VALUES (?, ?, ?)",
                (group_id, name, now_ms()),
            )

    def delete_stream(self, scope: Scope, group: str, name: str) -> None:
        group_id = self.group_id(scope, group)
        if not self.db.execute(
            "DELETE FROM logs_streams WHERE group_id = ? AND name = ?", (group_id, name)
        ):
            raise not_found("log stream")

    def _stream_row(self, group_id: int, name: str) -> Row | None:
        return self.db.one(
            "SELECT * FROM logs_streams WHERE group_id = ? AND name = ?", (group_id, name)
        )

    def stream_id(self, group_id: int, name: str) -> int:
        row = self._stream_row(group_id, name)
        if row is None:
            raise not_found("log stream")
        return int(row["id"])

    def list_streams(
        self, group_id: int, prefix: str, by_time: bool, descending: bool, offset: int, limit: int
    ) -> list[Row]:
        direction = "DESC" if descending else "ASC"
        order = (
            f"COALESCE(last_ts, 0) {direction}, name {direction}"
            if by_time
            else f"name {direction}"
        )
        return self.db.query(
            "SELECT * FROM logs_streams WHERE group_id = ? AND substr(name, 1, ?) = ? "
            f"ORDER BY {order} LIMIT ? OFFSET ?",
            (group_id, len(prefix), prefix, limit, offset),
        )

    # ------------------------------------------------------------ events

    def put_events(self, group_id: int, stream_id: int, events: Sequence[tuple[int, str]]) -> None:
        """Store events (timestamp ms, message) in one transaction; callers validate."""
        if not events:
            return
        ingest = now_ms()
        size = sum(len(message.encode()) for _, message in events)
        first = min(ts for ts, _ in events)
        last = max(ts for ts, _ in events)
        with self.db.transaction():
            self.db.executemany(
                "INSERT INTO logs_events (group_id, stream_id, ts, ingest, message) "
                "VALUES (?, ?, ?, ?, ?)",
                [(group_id, stream_id, ts, ingest, message) for ts, message in events],
            )
            self.db.execute(
                "UPDATE logs_streams SET first_ts = MIN(COALESCE(first_ts, ?), ?), "
                "last_ts = MAX(COALESCE(last_ts, ?), ?), last_ingest = ?, "
                "stored_bytes = stored_bytes + ? WHERE id = ?",
                (first, first, last, last, ingest, size, stream_id),
            )

    def append(
        self, scope: Scope, group: str, stream: str, events: Sequence[tuple[int, str]]
    ) -> None:
        """In-process write: events (timestamp ms, message), group and stream made on demand."""
        group_id, stream_id = self.ensure_stream(scope, group, stream)
        self.put_events(group_id, stream_id, events)

    def ensure_stream(self, scope: Scope, group: str, stream: str) -> tuple[int, int]:
        with self.db.transaction():
            row = self._group_row(scope, group)
            if row is None:
                self.db.execute(
                    "INSERT INTO logs_groups (account, region, name, created) VALUES (?, ?, ?, ?)",
                    (scope.account, scope.region, group, now_ms()),
                )
                row = self._group_row(scope, group)
            assert row is not None
            group_id = int(row["id"])
            found = self._stream_row(group_id, stream)
            if found is None:
                self.db.execute(
                    "INSERT INTO logs_streams (group_id, name, created) VALUES (?, ?, ?)",
                    (group_id, stream, now_ms()),
                )
                found = self._stream_row(group_id, stream)
            assert found is not None
            return group_id, int(found["id"])

    def stream_events(
        self,
        stream_id: int,
        start: int | None,
        end: int | None,
        after: tuple[int, int] | None,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[Event]:
        """Events of one stream in (timestamp, id) order.

        With `before` (or neither bound and `after` None meaning "the newest"), the last
        `limit` events before that key are returned; otherwise the first after `after`.
        """
        where = ["e.stream_id = ?"]
        params: list[object] = [stream_id]
        _time_range(where, params, start, end)
        newest = after is None
        if after is not None:
            where.append("(e.ts, e.id) > (?, ?)")
            params.extend(after)
        if before is not None:
            where.append("(e.ts, e.id) < (?, ?)")
            params.extend(before)
        order = "DESC" if newest else "ASC"
        rows = self.db.query(
            "SELECT e.*, s.name AS stream FROM logs_events e JOIN logs_streams s "
            f"ON s.id = e.stream_id WHERE {' AND '.join(where)} "
            f"ORDER BY e.ts {order}, e.id {order} LIMIT ?",
            (*params, limit),
        )
        events = [_event(row) for row in rows]
        return events[::-1] if newest else events

    def group_events(
        self,
        group_id: int,
        stream_ids: list[int] | None,
        start: int | None,
        end: int | None,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[Event]:
        where = ["e.group_id = ?"]
        params: list[object] = [group_id]
        if stream_ids is not None:
            where.append(f"e.stream_id IN ({','.join('?' * len(stream_ids))})")
            params.extend(stream_ids)
        _time_range(where, params, start, end)
        if after is not None:
            where.append("(e.ts, e.id) > (?, ?)")
            params.extend(after)
        rows = self.db.query(
            "SELECT e.*, s.name AS stream FROM logs_events e JOIN logs_streams s "
            f"ON s.id = e.stream_id WHERE {' AND '.join(where)} "
            "ORDER BY e.ts, e.id LIMIT ?",
            (*params, limit),
        )
        return [_event(row) for row in rows]

    def streams_named(self, group_id: int, names: list[str] | None, prefix: str) -> list[Row]:
        rows = self.db.query(
            "SELECT * FROM logs_streams WHERE group_id = ? AND substr(name, 1, ?) = ? "
            "ORDER BY name",
            (group_id, len(prefix), prefix),
        )
        if names is None:
            return rows
        wanted = set(names)
        return [row for row in rows if row["name"] in wanted]


def _time_range(where: list[str], params: list[object], start: int | None, end: int | None) -> None:
    if start is not None:
        where.append("e.ts >= ?")
        params.append(start)
    if end is not None:
        where.append("e.ts <= ?")
        params.append(end)


def _event(row: Row) -> Event:
    return Event(
        id=int(row["id"]),
        stream=str(row["stream"]),
        timestamp=int(row["ts"]),
        ingestion=int(row["ingest"]),
        message=str(row["message"]),
    )
