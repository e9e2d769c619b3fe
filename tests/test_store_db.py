"""The SQLite settings kobako's durability and speed rest on (kobako.store.db), read back
from a real connection: a pragma that silently failed to apply would change what an
acknowledged write survives, or what a write costs, without any other test noticing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kobako.store.db import BACKSTOP_PAGES, Database


def test_connection_settings(tmp_path: Path) -> None:
    db = Database(tmp_path / "kobako.db")
    try:
        def pragma(name: str) -> object:
            row = db.one(f"PRAGMA {name}")
            assert row is not None
            return row[0]

        assert pragma("journal_mode") == "wal"  # commits survive kill -9 without fsync
        assert pragma("synchronous") == 1  # NORMAL: the WAL is fsynced at checkpoints
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 5000
        # The background checkpointer does the checkpoints; a commit only past this.
        assert pragma("wal_autocheckpoint") == BACKSTOP_PAGES
        assert BACKSTOP_PAGES >= 10_000
        assert pragma("secure_delete") == 2  # FAST: no extra WAL page per freed page
    finally:
        db.close()


def test_grouped_writes_commit_together_and_fail_alone(tmp_path: Path) -> None:
    """Writes queued in one loop turn share a transaction; one that raises is rolled
    back alone (its savepoint) and the others commit."""
    db = Database(tmp_path / "kobako.db")
    db.execute("CREATE TABLE t (v INTEGER UNIQUE)")

    async def run() -> list[object]:
        def insert(value: int) -> int:
            return db.execute("INSERT INTO t (v) VALUES (?)", (value,))
        futures = [db.grouped(lambda v=v: insert(v)) for v in (1, 2, 1, 3)]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    try:
        outcomes = asyncio.run(run())
        assert outcomes[0] == 1 and outcomes[1] == 1 and outcomes[3] == 1
        assert isinstance(outcomes[2], Exception)  # the duplicate, alone
        assert [r[0] for r in db.query("SELECT v FROM t ORDER BY v")] == [1, 2, 3]
    finally:
        db.close()
