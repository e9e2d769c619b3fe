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

Small blobs (`LocalBlobStore.write_grouped`) are written by one thread in groups: it
takes every body queued since its last round, creates and writes their temp files,
fsyncs each, renames each, and only then resolves the callers' futures, in one hand-off
to the event loop per group. Every acknowledged blob is still fsynced and renamed before
its caller goes on; a group shares the wake-ups (one per group instead of two per blob),
and the file system's journal commits the group's fsyncs together.

New blob ids share their first four hex digits (the fan-out directories) with the ids
made just before them, for FANOUT_RUN ids, then move to a new random pair of
directories: a fresh data directory would otherwise make a directory (and fail a rename
first) for almost every new blob until all 65,536 existed. Ids keep 112 random bits.

Small PutObject bodies do not come here at all: they are kept in SQLite with their row
(kobako.store.inline), which costs a fraction of a file's create, fsync and rename.

`BlobStore` is the narrow interface the S3 store uses; `LocalBlobStore` is this
directory, `kobako.store.remote.RemoteBlobStore` another S3 endpoint, and
`kobako.store.backends.BlobBackends` routes a blob id to the store that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import secrets
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

_BLOB_ID = re.compile(r"[0-9a-f]{32}\Z")
FANOUT_RUN = 4096  # new blob ids in a row that go to the same fan-out directory
GROUP_MAX = 64  # bodies written in one round of the group writer at most


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
        self.blob_id = store.new_id()
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
        self._id_lock = threading.Lock()
        self._fanout = ""
        self._fanout_left = 0
        self._group: _GroupWriter | None = None
        self._tmp_dir = str(root / "tmp")
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        for stale in (root / "tmp").iterdir():
            stale.unlink(missing_ok=True)

    def new_id(self) -> str:
        """A fresh blob id; runs of FANOUT_RUN ids share their fan-out directories."""
        with self._id_lock:
            if self._fanout_left <= 0:
                self._fanout = secrets.token_hex(2)
                self._fanout_left = FANOUT_RUN
            self._fanout_left -= 1
            return self._fanout + secrets.token_hex(14)

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    async def write_grouped(self, pieces: Sequence[bytes]) -> str:
        """`write`, done by the group writer thread together with the other bodies
        waiting at the same time; returns once the blob is durable under its id."""
        group = self._group
        if group is None:
            group = self._group = _GroupWriter(self)
        return await group.submit(pieces)

    def write(self, pieces: Iterable[bytes]) -> str:
        """A new durable blob holding `pieces`, in one call: create the temp file,
        write, fsync, rename. Call off the event loop; returns the blob id."""
        blob_id = self.new_id()
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
            self.publish(tmp, blob_id)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return blob_id

    @property
    def tmp_dir_name(self) -> str:
        return self._tmp_dir

    @property
    def tmp_dir(self) -> Path:
        """Temp files in the making (emptied at startup)."""
        return Path(self._tmp_dir)

    def tmp_path(self, blob_id: str) -> Path:
        return Path(self._tmp_dir) / blob_id

    def publish(self, tmp: str | Path, blob_id: str) -> None:
        """Rename a finished temp file to the blob's final path. The fan-out
        directories are made the first time one is missing, not checked per blob."""
        final = self._file(blob_id)
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            if not os.path.exists(tmp):
                raise
            os.makedirs(os.path.dirname(final), exist_ok=True)
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
        new_id = self.new_id()
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


_Job = tuple[Sequence[bytes], "asyncio.Future[str]", asyncio.AbstractEventLoop]


class _GroupWriter:
    """One daemon thread writing queued small bodies in groups (see the module doc)."""

    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="kobako-blob-writer",
                                        daemon=True)
        self._thread.start()

    def submit(self, pieces: Sequence[bytes]) -> asyncio.Future[str]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._jobs.put((pieces, future, loop))
        return future

    def _run(self) -> None:
        while True:
            group = [self._jobs.get()]
            while len(group) < GROUP_MAX:
                try:
                    group.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            outcomes = self._write_group([pieces for pieces, _, _ in group])
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[str],
                                                               str | BaseException]]] = {}
            for (_, future, loop), outcome in zip(group, outcomes, strict=True):
                by_loop.setdefault(loop, []).append((future, outcome))
            for loop, results in by_loop.items():
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(_resolve, results)

    def _write_group(self, bodies: list[Sequence[bytes]]) -> list[str | BaseException]:
        """Create and write every temp file, then fsync each, then rename each: a blob
        is renamed only once its bytes are on disk, and reported only once renamed."""
        store = self._store
        outcomes: list[str | BaseException] = []
        opened: list[tuple[int, int, str]] = []  # (index, fd, blob id)
        for index, pieces in enumerate(bodies):
            blob_id = store.new_id()
            try:
                fd = os.open(f"{store.tmp_dir_name}/{blob_id}",
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except OSError as error:
                outcomes.append(error)
                continue
            outcomes.append(blob_id)
            opened.append((index, fd, blob_id))
            try:
                for piece in pieces:
                    view = memoryview(piece)
                    while view:
                        view = view[os.write(fd, view):]
            except OSError as error:
                outcomes[index] = error
        for index, fd, _ in opened:
            try:
                if store.fsync and not isinstance(outcomes[index], BaseException):
                    os.fsync(fd)
            except OSError as error:
                outcomes[index] = error
            finally:
                os.close(fd)
        for index, _, blob_id in opened:
            tmp = f"{store.tmp_dir_name}/{blob_id}"
            if isinstance(outcomes[index], BaseException):
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                continue
            try:
                store.publish(tmp, blob_id)
            except OSError as error:
                outcomes[index] = error
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        return outcomes


def _resolve(results: list[tuple[asyncio.Future[str], str | BaseException]]) -> None:
    for future, outcome in results:
        if future.cancelled():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
