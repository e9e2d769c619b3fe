"""Small object bodies kept in the SQL store, in the transaction that writes their row.

Why: a 4 KiB PutObject written as a file costs a temp-file create, a write, an fsync,
a rename and two thread hand-offs; in this process that was about as much as all the
rest of the request. MinIO keeps small objects inside their metadata for the same
reason, and SQLite reads and writes small blobs faster than the file system does
(sqlite.org/fasterthanfs.html). A body of at most `Config.inline_bytes` sent by
PutObject to a bucket in the data directory is stored here instead of in a file.

Atomic and durable like the row that refers to it, by construction: the body and the
row are written in one transaction (`InlineBlobStore.insert` runs inside it), so no
crash can leave a row without its bytes or the bytes without their row. An
acknowledged write has been committed to SQLite's WAL, which survives `kill -9` of
the server; with `synchronous=NORMAL` the WAL is fsynced at checkpoints, so after a
power loss the newest commits may be lost whole, rows and bytes together (the rows of
file-backed objects share that fate, see kobako.store.blobs). Keys never become
names here either: rows are keyed by generated ids.

An inline blob id is `@` and the row's integer key in `blob_rows`: `@` cannot start a
local blob id (hex) or a data backend's (`name:...`, names start with a letter or
digit), so the id alone says where the bytes are (kobako.store.backends). Why an
integer key: a text key is a second B-tree (SQLite's index behind `TEXT PRIMARY KEY`),
so each insert wrote one more page to the WAL; rows keyed by the rowid itself, given in
increasing order, also append to one leaf instead of landing on random ones. Ids are
never reused while the server runs (a counter starting above the largest key at
start-up), so a reader that looked up a record just before its object was replaced
can never read another object's bytes under the same id. Data directories written
before this hold `@` and 32 hex digits, rows of `blob_inline`; those are read, copied
and deleted where they are, and new bodies never go there.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable
from typing import BinaryIO

from kobako.store.blobs import BlobWriter
from kobako.store.db import Database

PREFIX = "@"

# Rowid tables: SQLite stores rows of several KiB (overflow pages) much more cheaply
# in a rowid table than in a WITHOUT ROWID one (~50 vs ~100 us per 4 KiB insert here).
# `blob_inline` holds the bodies of data directories written before `blob_rows`.
SCHEMA = [
    """
    CREATE TABLE blob_inline (
        id TEXT PRIMARY KEY,
        data BLOB NOT NULL
    )
    """,
    """
    CREATE TABLE blob_rows (
        id INTEGER PRIMARY KEY,
        data BLOB NOT NULL
    )
    """,
]
# The length of a `blob_inline` id: "@" and 32 hex digits (an integer key has at most 19).
_LEGACY_ID_LENGTH = 33


def is_inline(blob_id: str) -> bool:
    return blob_id.startswith(PREFIX)


class InlineBlobStore:
    """Blobs as rows of `blob_rows`; every call is one short SQL statement, cheap enough
    for the event loop, and joins the transaction open on this connection."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("blob_inline", SCHEMA)
        row = db.one("SELECT max(id) AS last FROM blob_rows")
        self._keys = itertools.count((row["last"] if row and row["last"] else 0) + 1)

    def new_id(self) -> str:
        return f"{PREFIX}{next(self._keys)}"

    def insert(self, blob_id: str, data: bytes) -> None:
        """Store `data` under an id from `new_id`: call it inside the transaction that
        writes the row referring to it, so that both commit (or roll back) together."""
        self._db.execute("INSERT INTO blob_rows (id, data) VALUES (?, ?)",
                         (int(blob_id[1:]), data))

    def write(self, pieces: Iterable[bytes]) -> str:
        """A new blob, committed on its own (as a file blob would be)."""
        blob_id = self.new_id()
        self.insert(blob_id, b"".join(pieces))
        return blob_id

    def writer(self) -> BlobWriter:
        """Never called: streamed bodies go to a bucket's store, which is never this one."""
        raise NotImplementedError("inline blobs are written whole (`insert`), not streamed")

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        table, key = _row(blob_id)
        row = self._db.one(f"SELECT substr(data, ?, ?) AS piece FROM {table} WHERE id = ?",
                           (offset + 1, length, key))
        if row is None:
            raise FileNotFoundError(f"inline blob {blob_id} is missing")
        return bytes(row["piece"])

    def open(self, blob_id: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        table, key = _row(blob_id)
        row = self._db.one(f"SELECT data FROM {table} WHERE id = ?", (key,))
        if row is None:
            raise FileNotFoundError(f"inline blob {blob_id} is missing")
        data = bytes(row["data"])
        end = len(data) if length is None else offset + length
        return io.BytesIO(data[offset:end])

    def link(self, blob_id: str) -> str:
        """A copy under a new id (rows have no shared lifetime to borrow)."""
        new_id = self.new_id()
        table, key = _row(blob_id)
        if self._db.execute(f"INSERT INTO blob_rows (id, data) SELECT ?, data FROM {table} "
                            "WHERE id = ?", (int(new_id[1:]), key)) != 1:
            raise FileNotFoundError(f"inline blob {blob_id} is missing")
        return new_id

    def delete(self, blob_id: str) -> None:
        table, key = _row(blob_id)
        self._db.execute(f"DELETE FROM {table} WHERE id = ?", (key,))


def _row(blob_id: str) -> tuple[str, str | int]:
    """The table and key of an inline blob id (checked: an id from a stored record, so
    never trusted to be well formed enough for SQL text)."""
    if len(blob_id) == _LEGACY_ID_LENGTH:
        return "blob_inline", blob_id
    digits = blob_id[1:]
    if not digits.isdigit() or not digits.isascii():
        raise FileNotFoundError(f"inline blob {blob_id} is missing")
    return "blob_rows", int(digits)
