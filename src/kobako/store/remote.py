"""Object bytes in another S3-compatible endpoint (AWS, MinIO, another kobako).

A bucket created on a configured backend keeps its metadata in kobako's SQLite like
every bucket, and its bytes here: each blob is one object in the backend's bucket,
named `<prefix><token>` where the blob id is `<backend>:<token>`, never by the user's
key, so kobako's rows stay the only map from keys (and versions) to bytes.

Writes: a body up to the small-body size is sent by one PutObject from memory. A
larger one is spooled to a temp file in the local data directory while it arrives
(`write` runs on the event loop and must not wait on the network), then `commit`
sends that file with one PutObject, which botocore streams from disk, so memory stays
bounded whatever the size. A blob is at most 5 GiB (S3's PUT and part limits), which
one PutObject can carry, so no remote multipart upload is needed. A PUT is
acknowledged only after the backend acknowledged the bytes.

Reads are (ranged) GetObjects streamed by the caller. Copies within the backend are
server-side CopyObjects.

Deletes are queued to one background thread: `delete` comes right after the metadata
commit, often on the event loop. A delete that fails (backend down) or never runs
(kill -9) leaves an orphan object in the backend, never a row without its bytes.

Every botocore failure becomes `BackendUnavailable`: S3's 503 ServiceUnavailable,
which SDKs retry, with the cause in kobako's log.
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from kobako.config import BackendConfig
from kobako.protocol.errors import AwsError

log = logging.getLogger("kobako.store.remote")

_TOKEN = re.compile(r"[0-9a-f]{32}\Z")


class BackendUnavailable(AwsError):
    """The data backend of a bucket could not do what a request needs."""

    def __init__(self, backend: str) -> None:
        super().__init__("ServiceUnavailable", "Service is unable to handle request.", 503,
                         sender_fault=False)
        self.backend = backend


def make_client(settings: BackendConfig) -> Any:
    """A botocore S3 client for the backend (thread-safe once made)."""
    from botocore.config import Config as BotoConfig
    from botocore.session import get_session

    config = BotoConfig(
        retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
        connect_timeout=5, read_timeout=60, max_pool_connections=32,
        s3={"addressing_style": settings.addressing_style},
    )
    return get_session().create_client(
        "s3", region_name=settings.region, endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key, config=config)


class RemoteBlobReader:
    """A GetObject body being read; errors while reading are the backend's too."""

    def __init__(self, store: RemoteBlobStore, body: Any) -> None:
        self._store = store
        self._body = body

    def read(self, size: int = -1, /) -> bytes:
        if self._body is None:
            return b""
        with self._store.calling("GetObject"):
            data: bytes = self._body.read(size if size >= 0 else None)
        return data

    def close(self) -> None:
        if self._body is not None:
            self._body.close()

    def __enter__(self) -> RemoteBlobReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None, /) -> None:
        self.close()


class RemoteBlobWriter:
    """A large body spooled to a local temp file, sent to the backend on commit."""

    def __init__(self, store: RemoteBlobStore) -> None:
        self._store = store
        self.blob_id = store.new_id()
        self._spool = store.spool_dir / f"spool-{secrets.token_hex(16)}"
        self._file = open(self._spool, "wb")  # noqa: SIM115 (closed in commit/abort)
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> str:
        """Send the spooled bytes (not fsynced here: the backend's ack makes them
        durable); call off the event loop."""
        self._file.close()
        try:
            self._store.put_file(self.blob_id, self._spool)
        finally:
            self._spool.unlink(missing_ok=True)
        return self.blob_id

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._spool.unlink(missing_ok=True)


class RemoteBlobStore:
    """Blobs as objects in one bucket of another S3 endpoint; see the module docstring."""

    def __init__(self, settings: BackendConfig, spool_dir: Path,
                 client: Any | None = None) -> None:
        self.name = settings.name
        self.settings = settings
        self.spool_dir = spool_dir
        self._client = client
        self._client_lock = threading.Lock()
        self._deletes: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._deleter: threading.Thread | None = None

    @property
    def client(self) -> Any:
        """Made on first use (creating a botocore client loads the S3 model)."""
        with self._client_lock:
            if self._client is None:
                self._client = make_client(self.settings)
            return self._client

    @contextmanager
    def calling(self, operation: str) -> Iterator[None]:
        """Turn a failed call to the backend into BackendUnavailable, logged."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as error:
            log.warning("data backend %s: %s failed: %s", self.name, operation, error)
            raise BackendUnavailable(self.name) from error

    def new_id(self) -> str:
        return f"{self.name}:{secrets.token_hex(16)}"

    def key(self, blob_id: str) -> str:
        """The backend key of one of this store's blobs."""
        name, _, token = blob_id.partition(":")
        if name != self.name or not _TOKEN.match(token):
            raise ValueError(f"not a blob id of backend {self.name}: {blob_id!r}")
        return self.settings.prefix + token

    def writer(self) -> RemoteBlobWriter:
        return RemoteBlobWriter(self)

    def write(self, pieces: Iterable[bytes]) -> str:
        """A small body, sent from memory by one PutObject."""
        blob_id = self.new_id()
        body = b"".join(pieces)
        with self.calling("PutObject"):
            self.client.put_object(Bucket=self.settings.bucket, Key=self.key(blob_id),
                                   Body=body)
        return blob_id

    def put_file(self, blob_id: str, path: Path) -> None:
        with open(path, "rb") as body, self.calling("PutObject"):
            self.client.put_object(Bucket=self.settings.bucket, Key=self.key(blob_id),
                                   Body=body)

    def open(self, blob_id: str, offset: int = 0,
             length: int | None = None) -> RemoteBlobReader:
        """A GetObject of the bytes from `offset` (a Range unless it is all of them)."""
        if length == 0:
            return RemoteBlobReader(self, None)
        params: dict[str, str] = {}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            params["Range"] = f"bytes={offset}-{last}"
        with self.calling("GetObject"):
            response = self.client.get_object(
                Bucket=self.settings.bucket, Key=self.key(blob_id), **params)
        return RemoteBlobReader(self, response["Body"])

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        with self.open(blob_id, offset, length) as reader:
            return reader.read()

    def link(self, blob_id: str) -> str:
        """A server-side copy in the backend: the bytes never pass through kobako."""
        new_id = self.new_id()
        with self.calling("CopyObject"):
            self.client.copy_object(
                Bucket=self.settings.bucket, Key=self.key(new_id),
                CopySource={"Bucket": self.settings.bucket, "Key": self.key(blob_id)})
        return new_id

    def delete(self, blob_id: str) -> None:
        """Queue the backend object for deletion; returns at once."""
        self._deletes.put(self.key(blob_id))
        with self._client_lock:
            if self._deleter is None:
                self._deleter = threading.Thread(
                    target=self._delete_forever, name=f"kobako-backend-{self.name}-deletes",
                    daemon=True)
                self._deleter.start()

    def _delete_forever(self) -> None:
        while True:
            key = self._deletes.get()
            try:
                with self.calling("DeleteObject"):
                    self.client.delete_object(Bucket=self.settings.bucket, Key=key)
            except BackendUnavailable:
                log.warning("data backend %s: object %s is left behind (orphan)",
                            self.name, key)
            except Exception:
                log.exception("data backend %s: deleting %s", self.name, key)
