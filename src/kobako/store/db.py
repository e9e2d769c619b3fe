"""The metadata store: a narrow SQL interface, SQLite (WAL) underneath.

Services speak portable SQL through `Database` only (execute / query / one /
transaction / grouped / migrate), so that a PostgreSQL implementation of this class can stand
in for several servers later. SQLite runs in autocommit mode; `transaction()` opens
BEGIN IMMEDIATE so that a read-modify-write never interleaves with another writer.

`grouped` is group commit for the event loop: the writes queued during one loop turn
share one transaction (one BEGIN/COMMIT, one round of WAL writes and file locks), each
in a savepoint of its own, and every caller resumes only after that COMMIT returned.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

Row = sqlite3.Row
Params = Sequence[Any]

# The WAL is copied back into the database file (a checkpoint, with its fsyncs) by a
# background thread every CHECKPOINT_S, not by whichever commit crosses SQLite's
# 1,000-page mark: on a slow disk that commit held the event loop for 5-300 ms. A
# commit still checkpoints by itself past BACKSTOP_PAGES, should the thread fall behind.
# Under a steady stream of writes (small PUT bodies are stored in the WAL too), 4,000
# pages was reached between two rounds of the thread, and ~10% of the event loop's time
# went to fdatasync in those commits' checkpoints (seen in /proc/PID/task/PID/stack);
# 40,000 pages (160 MiB of WAL at most) leaves it to the thread. The WAL file keeps its
# largest size (no journal_size_limit): cutting it back after each restart cost a
# synchronous discard on the loop on a file system mounted with `discard`.
CHECKPOINT_S = 0.5
BACKSTOP_PAGES = 40_000


class Database:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            # NORMAL: a commit is durable against a killed process (the WAL is in the
            # OS page cache), fsync happens at checkpoints.
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
            f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}",
            # Debian's SQLite zeroes deleted content by default (SECURE_DELETE), which
            # writes each page freed by a delete (an overwritten small object's body
            # pages) to the WAL once more. FAST zeroes only within pages written anyway:
            # ~1.6 fewer page writes per overwriting 4 KiB PUT. Deleted object bytes can
            # stay in free pages until reused, as a deleted blob file's stay in free
            # disk blocks.
            "PRAGMA secure_delete=FAST",
        ):
            self._conn.execute(pragma)
        self._grouped: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._closing = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(path,), name="kobako-checkpoint", daemon=True)
        self._checkpointer.start()
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS kobako_migrations "
            "(component TEXT PRIMARY KEY, version INTEGER)"
        )

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with self._lock:
            self._conn.executemany(sql, rows)

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Params = ()) -> Row | None:
        with self._lock:
            row: Row | None = self._conn.execute(sql, params).fetchone()
            return row

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def grouped(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """Run `work` (SQL through this Database) in the transaction this loop turn's
        `grouped` calls share; the future resolves (to what `work` returned, or its
        exception, with its savepoint rolled back) once that transaction committed.
        `work` is skipped if the future was cancelled before its turn came."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._grouped.append((work, future))
        if len(self._grouped) == 1:
            loop.call_soon(self._commit_grouped)
        return future

    def _commit_grouped(self) -> None:
        batch, self._grouped = self._grouped, []
        if len(batch) == 1:  # alone in its transaction: no savepoint needed
            self._commit_one(*batch[0])
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.transaction():
                for work, future in batch:
                    if future.cancelled():
                        outcomes.append((False, None))
                        continue
                    self._conn.execute("SAVEPOINT grouped")
                    try:
                        outcomes.append((True, work()))
                    except Exception as error:  # this write alone fails
                        self._conn.execute("ROLLBACK TO grouped")
                        outcomes.append((False, error))
                    self._conn.execute("RELEASE grouped")
        except Exception as error:  # the COMMIT failed: none of them happened
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _commit_one(self, work: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        try:
            with self.transaction():
                value = work()
        except Exception as error:  # work failed (rolled back), or the COMMIT did
            future.set_exception(error)
            return
        future.set_result(value)

    def migrate(self, component: str, steps: Sequence[str]) -> None:
        """Apply the schema steps of `component` not yet applied, in order."""
        with self.transaction():
            row = self.one(
                "SELECT version FROM kobako_migrations WHERE component = ?", (component,)
            )
            done = int(row["version"]) if row else 0
            for sql in steps[done:]:
                for statement in _split(sql):
                    self._conn.execute(statement)
            self.execute(
                "INSERT INTO kobako_migrations (component, version) VALUES (?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, len(steps)),
            )

    def _checkpoint_loop(self, path: Path) -> None:
        """PASSIVE checkpoints on a connection of this thread: they never wait for
        (or block) the writer, and cost nothing when the WAL has no new frames."""
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            while not self._closing.wait(CHECKPOINT_S):
                try:
                    # The writer restarts the WAL at its start only once a checkpoint
                    # has copied every frame: frames committed during one are caught up
                    # by the next, much shorter, one. Each result is fetched to its end
                    # (an open statement would keep a read lock and block the restart).
                    for _ in range(4):
                        busy, frames, copied = conn.execute(
                            "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        if busy or frames == copied:
                            break
                except sqlite3.Error:
                    continue  # busy or gone: the next round (or the backstop) does it
        finally:
            conn.close()

    def close(self) -> None:
        self._closing.set()
        self._checkpointer.join(timeout=5)
        with self._lock:
            self._conn.close()


def _split(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]
