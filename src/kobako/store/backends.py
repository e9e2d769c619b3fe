"""Which store holds a blob: the data directory, or a configured data backend.

A local blob id is 32 hex digits; a backend's blob id is `<backend>:<32 hex>`; a small
body kept in the SQL store (kobako.store.inline) has `@<32 hex>`. The id names its
store, so reading, copying and deleting a blob needs nothing but the id, and a bucket's
rows (current objects, versions, parts) all resolve the same way.
A bucket chooses the store its new blobs go to (`store(bucket.backend)`).
"""

from __future__ import annotations

from kobako.config import Config
from kobako.store.blobs import BlobReader, BlobStore, LocalBlobStore
from kobako.store.db import Database
from kobako.store.inline import InlineBlobStore, is_inline
from kobako.store.remote import BackendUnavailable, RemoteBlobStore

_COPY_CHUNK = 1024 * 1024


class BlobBackends:
    """The local blob store and the configured remote ones, addressed by blob id."""

    def __init__(self, local: LocalBlobStore, remotes: dict[str, BlobStore],
                 inline: InlineBlobStore) -> None:
        self.local = local
        self.remotes = remotes
        self.inline = inline

    def has_backend(self, name: str) -> bool:
        return name in self.remotes

    def store(self, backend: str | None) -> BlobStore:
        """Where new blobs of a bucket on `backend` (None: local) go."""
        if backend is None:
            return self.local
        try:
            return self.remotes[backend]
        except KeyError:  # a bucket made on a backend since removed from the config
            raise BackendUnavailable(backend) from None

    def of(self, blob_id: str) -> BlobStore:
        """The store holding `blob_id`."""
        if is_inline(blob_id):
            return self.inline
        backend, sep, _ = blob_id.partition(":")
        return self.store(backend) if sep else self.local

    @staticmethod
    def is_local(blob_id: str) -> bool:
        """Whether reading the blob is a local file or SQL read (cheap enough for the
        loop)."""
        return ":" not in blob_id

    @staticmethod
    def is_file(blob_id: str) -> bool:
        """Whether the blob is a file of the data directory (it can be sendfile'd)."""
        return ":" not in blob_id and not is_inline(blob_id)

    def open(self, blob_id: str, offset: int = 0, length: int | None = None) -> BlobReader:
        return self.of(blob_id).open(blob_id, offset, length)

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        return self.of(blob_id).read(blob_id, offset, length)

    def link(self, blob_id: str) -> str:
        return self.of(blob_id).link(blob_id)

    def delete(self, blob_id: str) -> None:
        self.of(blob_id).delete(blob_id)

    def copy(self, blob_id: str, backend: str | None) -> str:
        """A new blob on `backend` with the bytes of `blob_id`: a link (or server-side
        copy) within one store, a bounded-memory stream between two."""
        source, target = self.of(blob_id), self.store(backend)
        if source is target or (source is self.inline and target is self.local):
            return source.link(blob_id)
        writer = target.writer()
        try:
            with source.open(blob_id) as reader:
                while piece := reader.read(_COPY_CHUNK):
                    writer.write(piece)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise


def open_blobs(config: Config, db: Database) -> BlobBackends:
    """The blob stores of a server: `<data dir>/s3`, small bodies in `db`, and one
    store per configured backend."""
    local = LocalBlobStore(config.data_dir / "s3", fsync=config.fsync)
    remotes: dict[str, BlobStore] = {  # large bodies for a backend are spooled in tmp/
        name: RemoteBlobStore(settings, local.tmp_dir)
        for name, settings in config.backends.items()}
    return BlobBackends(local, remotes, InlineBlobStore(db))
