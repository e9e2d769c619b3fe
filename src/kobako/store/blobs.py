"""Object bytes on disk, written atomically, named by random ids, never by key.

A blob is written to `tmp/` and, on commit, fsynced and renamed to
`blobs/ab/cd/<id>`. Since file names are generated ids, no object key (such as
`../../etc/passwd`) ever becomes part of a path.

Durability: the file is fsynced before the rename, so a blob visible under its final
name is complete even after a power loss. The directory is not fsynced after the
rename: a rename is visible to every process (and survives `kill -9` of this one) as
soon as it returns, which is the guarantee an acknowledged PUT gives. After a power
loss the rename itself might be lost, but so might the metadata row that refers to it
(SQLite runs with synchronous=NORMAL, which fsyncs at checkpoints only), so fsyncing
the directory would cost a journal commit per object without making an acknowledged
PUT any more durable. What no crash can produce is a row pointing at a half-written
blob: the bytes are fsynced before the rename, and the row is committed after it.

`BlobStore` is the narrow interface the S3 store uses; `LocalBlobStore` is this
directory, `kobako.store.remote.RemoteBlobStore` another S3 endpoint, and
`kobako.store.backends.BlobBackends` routes a blob id to the store that holds it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

_BLOB_ID = re.compile(r"[0-9a-f]{32}\Z")


class BlobReader(Protocol):
    """An open blob: read from where it was opened, then close (or use `with`)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...

    def __enter__(self) -> BlobReader: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None, /) -> None: ...


class BlobWriter(Protocol):
    """A blob being streamed in: `write` is cheap (a local file), `commit` makes it
    durable and returns its id (call it off the event loop), `abort` drops it."""

    size: int

    def write(self, data: bytes) -> None: ...

    def commit(self) -> str: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """Where object bytes live, addressed by ids the store makes up (never by key).

    Every method may block (disk or network): call them off the event loop, except
    where a store is known to be local (`LocalBlobStore.read` of a small range).
    """

    def writer(self) -> BlobWriter: ...

    def write(self, pieces: Iterable[bytes]) -> str: ...

    def open(self, blob_id: str, offset: int = 0, length: int | None = None) -> BlobReader:
        """The bytes from `offset`, `length` of them (None: to the end)."""
        ...

    def read(self, blob_id: str, offset: int, length: int) -> bytes: ...

    def link(self, blob_id: str) -> str:
        """A new blob with the same bytes, in this store, with a lifetime of its own."""
        ...

    def delete(self, blob_id: str) -> None: ...


class LocalBlobWriter:
    """A blob being streamed to a temp file; create it off the event loop (it opens
    the file)."""

    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        self.blob_id = secrets.token_hex(16)
        self._tmp = store.tmp_path(self.blob_id)
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
        self._store.publish(self._tmp, self.blob_id)
        return self.blob_id

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class LocalBlobStore:
    """Blobs as files under `root` (the data directory's `s3/`)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self._tmp_dir = str(root / "tmp")
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        for stale in (root / "tmp").iterdir():
            stale.unlink(missing_ok=True)

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def write(self, pieces: Iterable[bytes]) -> str:
        """A new durable blob holding `pieces`, in one call: create the temp file,
        write, fsync, rename. Call off the event loop; returns the blob id."""
        blob_id = secrets.token_hex(16)
        tmp = f"{self._tmp_dir}/{blob_id}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            try:
                for piece in pieces:
                    view = memoryview(piece)
                    while view:
                        view = view[os.write(fd, view):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self.publish(Path(tmp), blob_id)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return blob_id

    @property
    def tmp_dir(self) -> Path:
        """Temp files in the making (emptied at startup)."""
        return Path(self._tmp_dir)

    def tmp_path(self, blob_id: str) -> Path:
        return Path(self._tmp_dir) / blob_id

    def publish(self, tmp: Path, blob_id: str) -> None:
        """Rename a finished temp file to the blob's final path. The fan-out
        directories are made the first time one is missing, not checked per blob."""
        final = self.path(blob_id)
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            if not os.path.exists(tmp):
                raise
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)

    def path(self, blob_id: str) -> Path:
        if not _BLOB_ID.match(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id[:2] / blob_id[2:4] / blob_id

    def _file(self, blob_id: str) -> str:
        if not _BLOB_ID.match(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return f"{self.root}/{blob_id[:2]}/{blob_id[2:4]}/{blob_id}"

    def link(self, blob_id: str) -> str:
        """A new blob with the same bytes (a hard link: no copy, no shared lifetime)."""
        new_id = secrets.token_hex(16)
        target = self.path(new_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(self.path(blob_id), target)
        return new_id

    def open(self, blob_id: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        """The file, positioned at `offset`; the caller reads no more than it wants."""
        handle = open(self._file(blob_id), "rb")  # noqa: SIM115 (the caller closes it)
        if offset:
            handle.seek(offset)
        return handle

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """`length` bytes at `offset` (fewer only if the file is shorter): one open and
        one pread, for small reads on the event loop."""
        fd = os.open(self._file(blob_id), os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, length, offset)
            while len(data) < length:
                more = os.pread(fd, length - len(data), offset + len(data))
                if not more:
                    break
                data += more
            return data
        finally:
            os.close(fd)

    def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)
