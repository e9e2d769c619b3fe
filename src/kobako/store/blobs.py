"""Object bytes on disk, written atomically, named by random ids, never by key.

A blob is written to `tmp/` and, on commit, fsynced and renamed to
`blobs/ab/cd/<id>`. Since file names are generated ids, no object key (such as
`../../etc/passwd`) ever becomes part of a path.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO

_BLOB_ID = re.compile(r"[0-9a-f]{32}\Z")


class BlobWriter:
    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self.blob_id = secrets.token_hex(16)
        self._tmp = store.root / "tmp" / self.blob_id
        self._file: BinaryIO = open(self._tmp, "wb")  # noqa: SIM115 (closed in commit/abort)
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> str:
        """Make the bytes durable and visible under `blob_id`; call off the event loop."""
        self._file.flush()
        if self._store.fsync:
            os.fsync(self._file.fileno())
        self._file.close()
        final = self._store.path(self.blob_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, final)
        return self.blob_id

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        for stale in (root / "tmp").iterdir():
            stale.unlink(missing_ok=True)

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def path(self, blob_id: str) -> Path:
        if not _BLOB_ID.match(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id[:2] / blob_id[2:4] / blob_id

    def link(self, blob_id: str) -> str:
        """A new blob with the same bytes (a hard link: no copy, no shared lifetime)."""
        new_id = secrets.token_hex(16)
        target = self.path(new_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(self.path(blob_id), target)
        return new_id

    def open(self, blob_id: str) -> BinaryIO:
        return open(self.path(blob_id), "rb")

    def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)
