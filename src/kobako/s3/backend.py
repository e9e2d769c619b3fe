"""What every S3 handler shares: the store, access checks, body streaming."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, cast

from kobako.protocol.errors import AwsError
from kobako.protocol.http import BodyStream, FileRegion, RegionBody
from kobako.s3 import errors
from kobako.s3.access import authorize
from kobako.s3.checksums import ALGORITHMS, b64, new_hasher
from kobako.s3.identity import canonical_user_id
from kobako.s3.store import Bucket, Ingested, ObjectRecord, S3Store
from kobako.server.service import RequestContext

READ_SIZE = 1024 * 1024
SMALL_OBJECT = 256 * 1024
STORAGE_CLASSES = {
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER", "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR", "SNOW", "EXPRESS_ONEZONE",
}
# Content headers stored with an object and returned on GET/HEAD, by parameter name.
CONTENT_PARAMS = (
    "ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage",
    "CacheControl", "Expires", "WebsiteRedirectLocation",
)




@dataclass
class S3Backend:
    store: S3Store
    # Canonical user id -> display name of every configured account: ACL grantees
    # are named and checked against it.
    users: dict[str, str] = field(default_factory=dict)

    def bucket(self, ctx: RequestContext, name: str) -> Bucket:
        """The bucket, if it exists and policy, ownership or ACL let the caller in."""
        bucket = self.store.get_bucket(name)
        if bucket is None:
            raise errors.no_such_bucket(name)
        expected = ctx.request.headers.get("x-amz-expected-bucket-owner")
        if expected is not None and expected != bucket.account_id:
            raise errors.access_denied()
        authorize(self.store, ctx, bucket)
        return bucket

    def object(
        self, ctx: RequestContext, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectRecord:
        """The current object, or one version of it; delete markers answer as AWS does."""
        self.bucket(ctx, bucket)
        if version_id is not None:
            record = self.store.get_version(bucket, key, version_id)
            if record is None:
                raise errors.no_such_version(key, version_id)
            if record.delete_marker:
                raise AwsError("MethodNotAllowed",
                               "The specified method is not allowed against this resource.",
                               405, fields={"Method": ctx.request.method,
                                            "ResourceType": "DeleteMarker"},
                               headers={"x-amz-delete-marker": "true",
                                        "x-amz-version-id": version_id})
            return record
        record = self.store.get_object(bucket, key)
        if record is None:
            error = errors.no_such_key(key)
            latest = self.store.latest_version(bucket, key)
            if latest is not None and latest.delete_marker:
                error.headers.update({"x-amz-delete-marker": "true",
                                      "x-amz-version-id": latest.version_id or "null"})
            raise error
        return record

    async def ingest_body(
        self, body: BodyStream, params: dict[str, Any], trailer: str = "", inline: bool = False
    ) -> tuple[Ingested, dict[str, str]]:
        """Stream the request body to a blob and check every digest the client sent.

        Returns the blob and the checksums to store (algorithm -> base64). With
        `inline`, a small body may come back unwritten (see `S3Store.ingest`).
        """
        wanted = requested_checksums(params, trailer)
        expected_md5 = params.get("ContentMD5")
        if expected_md5 is not None:
            try:
                if len(base64.b64decode(expected_md5, validate=True)) != 16:
                    raise ValueError
            except (ValueError, binascii.Error):
                raise AwsError("InvalidDigest", "The Content-MD5 you specified was invalid.",
                               400) from None
        ingested = await self.store.ingest(body, set(wanted), params.get("Bucket"), inline)
        try:
            declared = params.get("ContentLength")
            if body.length is not None and ingested.size != body.length:
                raise AwsError("IncompleteBody", "You did not provide the number of bytes "
                               "specified by the Content-Length HTTP header", 400)
            if declared is not None and body.length is None and ingested.size != declared:
                raise AwsError("IncompleteBody", "You did not provide the number of bytes "
                               "specified by the Content-Length HTTP header", 400)
            if expected_md5 is not None and b64(ingested.md5) != expected_md5:
                raise AwsError("BadDigest",
                               "The Content-MD5 you specified did not match what we received.",
                               400)
            trailers = body.trailers
            stored: dict[str, str] = {}
            for algorithm in wanted:
                actual = b64(ingested.digests[algorithm])
                sent = params.get(f"Checksum{algorithm}") or trailers.get(
                    f"x-amz-checksum-{algorithm.lower()}")
                if sent is not None and sent != actual:
                    raise errors.bad_digest(algorithm.lower())
                stored[algorithm] = actual
        except BaseException:
            if ingested.inline is None:  # an inline body was never stored
                self.store.discard([ingested.blob_id])
            raise
        return ingested, stored

    def read(
        self, record: ObjectRecord, start: int = 0, end: int | None = None
    ) -> bytes | AsyncIterator[bytes]:
        """Bytes [start, end] of the object: small local reads at once, the rest streamed
        (a data backend is never waited on from the event loop)."""
        last = record.size - 1 if end is None else end
        if last - start + 1 <= SMALL_OBJECT and all(
                self.store.blobs.is_local(blob_id) for blob_id, _ in record.segments):
            return b"".join(self._read_sync(record.segments, start, last))
        stream = self._stream(record.segments, start, last)
        spans = _spans(record.segments, start, last)
        if not all(self.store.blobs.is_file(blob_id) for blob_id, _, _ in spans):
            return stream
        # Local files: a server that can (kobako.server.http) sends them with sendfile.
        regions = [FileRegion(functools.partial(_open_file, self.store.blobs, blob_id),
                              offset, length) for blob_id, offset, length in spans]
        return RegionBody(regions, stream)

    async def body(
        self, record: ObjectRecord, start: int = 0, end: int | None = None
    ) -> bytes | AsyncIterator[bytes]:
        """`read`, with a streamed body's first piece read already: a data backend that
        cannot be reached answers with an error, not with headers and a cut-off body."""
        body = self.read(record, start, end)
        if isinstance(body, bytes):
            return body
        if isinstance(body, RegionBody):
            # Local files: opening the first one is the check (a missing blob fails here).
            await body.open_first()
            return body
        first = await anext(body, b"")
        return _prepend(first, body)

    def _read_sync(self, segments: list[tuple[str, int]], start: int, last: int) -> list[bytes]:
        return [self.store.blobs.read(blob_id, offset, length)
                for blob_id, offset, length in _spans(segments, start, last)]

    async def _stream(
        self, segments: list[tuple[str, int]], start: int, last: int
    ) -> AsyncIterator[bytes]:
        for blob_id, offset, remaining in _spans(segments, start, last):
            handle = await asyncio.to_thread(self.store.blobs.open, blob_id, offset, remaining)
            try:
                while remaining > 0:
                    piece = await asyncio.to_thread(handle.read, min(READ_SIZE * 4, remaining))
                    if not piece:
                        raise OSError(f"blob {blob_id} is shorter than recorded")
                    remaining -= len(piece)
                    yield piece
            finally:
                handle.close()

    def digest(self, segments: list[tuple[str, int]], algorithm: str) -> str:
        """The base64 checksum of the bytes of `segments`; call off the event loop."""
        hasher = new_hasher(algorithm)
        for blob_id, _ in segments:
            with self.store.blobs.open(blob_id) as handle:
                while piece := handle.read(READ_SIZE):
                    hasher.update(piece)
        return b64(hasher.digest())


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for piece in rest:
        yield piece


def _open_file(blobs: Any, blob_id: str) -> BinaryIO:
    """A local blob's file (a real file, so it has a descriptor to sendfile from)."""
    return cast(BinaryIO, blobs.open(blob_id))


def _spans(segments: list[tuple[str, int]], start: int,
           last: int) -> list[tuple[str, int, int]]:
    """(blob id, offset in the blob, length) of each segment's share of [start, last]."""
    spans = []
    offset = 0
    for blob_id, size in segments:
        seg_start, seg_last = offset, offset + size - 1
        offset += size
        if seg_last < start or seg_start > last or size == 0:
            continue
        spans.append((blob_id, max(start - seg_start, 0),
                      min(last, seg_last) - max(start, seg_start) + 1))
    return spans


def requested_checksums(params: dict[str, Any], trailer: str = "") -> list[str]:
    """The checksum algorithms named by the request (headers, trailer, SDK header)."""
    if not trailer and _CHECKSUM_PARAMS.isdisjoint(params):
        return []  # most requests name none: no per-algorithm look-ups
    wanted: list[str] = []
    algorithm = params.get("ChecksumAlgorithm")
    if algorithm:
        if algorithm.upper() not in ALGORITHMS:
            raise errors.invalid_argument("Checksum algorithm provided is unsupported.",
                                          "x-amz-sdk-checksum-algorithm", algorithm)
        wanted.append(algorithm.upper())
    for name in ALGORITHMS:
        if params.get(f"Checksum{name}") and name not in wanted:
            wanted.append(name)
    for name in ALGORITHMS:
        if f"x-amz-checksum-{name.lower()}" in trailer.lower() and name not in wanted:
            wanted.append(name)
    return wanted


# The parameters that can name a checksum algorithm.
_CHECKSUM_PARAMS = frozenset(["ChecksumAlgorithm", *(f"Checksum{name}" for name in ALGORITHMS)])


_CONTENT_PARAM_NAMES = frozenset(CONTENT_PARAMS)


def content_headers(params: dict[str, Any]) -> dict[str, Any]:
    """The content headers and user metadata of a PUT, as stored with the object."""
    stored: dict[str, Any] = {}
    # Most PUTs name no content header: one set test instead of seven look-ups.
    named = () if _CONTENT_PARAM_NAMES.isdisjoint(params) else CONTENT_PARAMS
    for name in named:
        value = params.get(name)
        if value is None:
            continue
        if name == "ContentEncoding":
            parts = [p.strip() for p in str(value).split(",") if p.strip() != "aws-chunked"]
            if not parts:
                continue
            value = ",".join(parts)
        stored[name] = value.isoformat() if isinstance(value, datetime) else value
    if params.get("Metadata"):
        stored["Metadata"] = dict(params["Metadata"])
    if "ContentType" not in stored:
        stored["ContentType"] = "binary/octet-stream"
    return stored


def storage_class(params: dict[str, Any]) -> str:
    value = params.get("StorageClass") or "STANDARD"
    if value not in STORAGE_CLASSES:
        raise AwsError("InvalidStorageClass", "The storage class you specified is not valid",
                       400, fields={"StorageClassRequested": value})
    return str(value)


__all__ = ["S3Backend", "canonical_user_id", "content_headers", "storage_class"]
