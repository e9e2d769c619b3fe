"""Object operations: PUT, GET, HEAD, DELETE, DeleteObjects, CopyObject."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from kobako.protocol.errors import AwsError
from kobako.s3 import errors, lifecycle, lock
from kobako.s3.access import as_source_read, object_acl
from kobako.s3.backend import S3Backend, content_headers, storage_class
from kobako.s3.checksums import ALGORITHMS
from kobako.s3.names import check_key
from kobako.s3.store import ObjectRecord, now
from kobako.s3.tagging import tags_from_header
from kobako.server.service import Handler, RequestContext

_RANGE = re.compile(r"bytes=(\d*)-(\d*)\Z")
# The headers a GET can override (response-cache-control=... and friends: Response<name>).
RESPONSE_OVERRIDES = ("CacheControl", "ContentDisposition", "ContentEncoding",
                      "ContentLanguage", "ContentType", "Expires")
_RESPONSE_OVERRIDES = frozenset(f"Response{name}" for name in RESPONSE_OVERRIDES)
# The If-* parameters of a PUT (conditional writes).
_WRITE_CONDITIONS = frozenset(["IfMatch", "IfNoneMatch"])
# The If-* parameters of a GET or HEAD.
_CONDITIONS = frozenset(["IfMatch", "IfNoneMatch", "IfModifiedSince", "IfUnmodifiedSince"])


def _etag_matches(condition: str, etag: str) -> bool:
    wanted = {part.strip() for part in condition.split(",")}
    return "*" in wanted or etag in wanted or etag.strip('"') in {w.strip('"') for w in wanted}


def check_conditions(record: ObjectRecord, params: dict[str, Any], prefix: str = "") -> int | None:
    """Evaluate If-* conditions as S3 does; returns 304 when 'not modified'.

    `prefix` is 'CopySource' for the x-amz-copy-source-if-* forms of CopyObject.
    """
    if_match = params.get(f"{prefix}IfMatch")
    if_none_match = params.get(f"{prefix}IfNoneMatch")
    modified_since: datetime | None = params.get(f"{prefix}IfModifiedSince")
    unmodified_since: datetime | None = params.get(f"{prefix}IfUnmodifiedSince")
    if if_match is not None:
        if not _etag_matches(if_match, record.etag):
            raise errors.precondition_failed("If-Match")
    elif unmodified_since is not None and _whole_seconds(record) > unmodified_since:
        raise errors.precondition_failed("If-Unmodified-Since")
    if if_none_match is not None:
        if _etag_matches(if_none_match, record.etag):
            if prefix:
                raise errors.precondition_failed("x-amz-copy-source-If-None-Match")
            return 304
    elif modified_since is not None and _whole_seconds(record) <= modified_since:
        if prefix:
            raise errors.precondition_failed("x-amz-copy-source-If-Modified-Since")
        return 304
    return None


def _whole_seconds(record: ObjectRecord) -> datetime:
    """Last-Modified as the If-*-Since headers can state it (HTTP dates have no
    fraction of a second)."""
    return record.last_modified.replace(microsecond=0)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a Range header; None where S3 ignores it (malformed)."""
    found = _RANGE.match(header.strip())
    if not found or found.groups() == ("", ""):
        return None
    first_text, last_text = found.groups()
    if size == 0:
        raise _invalid_range(size)
    if first_text == "":
        length = int(last_text)
        if length == 0:
            raise _invalid_range(size)
        return max(size - length, 0), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size:
        raise _invalid_range(size)
    if last < first:
        return None
    return first, min(last, size - 1)


def _invalid_range(size: int) -> AwsError:
    return AwsError("InvalidRange", "The requested range is not satisfiable", 416,
                    fields={"RangeRequested": "", "ActualObjectSize": str(size)},
                    headers={"Content-Range": f"bytes */{size}"})


def object_headers(record: ObjectRecord) -> dict[str, Any]:
    """What GET and HEAD report about an object besides its bytes."""
    out: dict[str, Any] = {
        "ETag": record.etag,
        "LastModified": record.last_modified,
        "ContentLength": record.size,
        "AcceptRanges": "bytes",
    }
    for name, value in record.headers.items():
        if name == "Expires":
            out[name] = datetime.fromisoformat(value)
        elif name == "Tags":
            out["TagCount"] = len(value) or None
        elif name not in ("Metadata", "Lock", "CompletedUpload", "ACL", "Owner"):
            out[name] = value
    if record.headers.get("Metadata"):
        out["Metadata"] = record.headers["Metadata"]
    if record.storage_class != "STANDARD":
        out["StorageClass"] = record.storage_class
    if record.version_id is not None:
        out["VersionId"] = record.version_id
    if len(record.segments) > 1 or "-" in record.etag:
        out["PartsCount"] = len(record.segments)
    if "Lock" in record.headers:  # lock.report of an unlocked object: nothing to add
        out.update(lock.report(record))
    return out


def checksum_fields(record: ObjectRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for algorithm, value in record.checksums.items():
        out[f"Checksum{algorithm}"] = value
    if record.checksums:
        out["ChecksumType"] = "COMPOSITE" if any("-" in v for v in record.checksums.values()) \
            else "FULL_OBJECT"
    return out


def build_handlers(s3: S3Backend) -> dict[str, Handler]:
    async def put_object(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket, key = params["Bucket"], params["Key"]
        owner = s3.bucket(ctx, bucket)
        check_key(key)
        klass = storage_class(params)
        headers = content_headers(params)
        tags = tags_from_header(params.get("Tagging"))
        if tags:
            headers["Tags"] = tags
        headers.update(object_acl(s3.store, ctx, owner, params))
        lock.stamp(s3.store, bucket, params, headers)
        # Most PUTs are unconditional: one set test spares both checks below.
        conditional = not _WRITE_CONDITIONS.isdisjoint(params)
        if conditional:
            _check_write_conditions(s3, bucket, key, params)
        trailer = ctx.request.headers.get("x-amz-trailer", "")
        ingested, checksums = await s3.ingest_body(params["Body"], params, trailer, inline=True)
        record = ObjectRecord(
            bucket=bucket, key=key, size=ingested.size, etag=f'"{ingested.md5.hex()}"',
            last_modified=now(), storage_class=klass,
            segments=[(ingested.blob_id, ingested.size)], headers=headers, checksums=checksums,
        )
        def check() -> None:  # in the transaction that writes the row
            if conditional:
                _check_write_conditions(s3, bucket, key, params)
            # The bucket may have been deleted while the body streamed (a cached lookup).
            if s3.store.get_bucket(bucket) is None:
                raise errors.no_such_bucket(bucket)

        # Group commit: answered once the transaction holding this row (and an inline
        # body) committed.
        committed = s3.store.put_object_grouped(record, check, ingested)
        try:
            replaced = await committed
        except BaseException:
            if not _succeeded(committed):  # no row refers to the new blob
                if ingested.inline is None:  # (an inline one was rolled back with it)
                    s3.store.discard([ingested.blob_id])
            else:  # committed, but this task was cancelled since
                s3.store.discard(committed.result())
            raise
        s3.store.discard(replaced)
        return _put_answer(s3, record)

    async def get_object(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = s3.object(ctx, params["Bucket"], params["Key"], params.get("VersionId"))
        # Most GETs are unconditional: one set test instead of check_conditions' look-ups.
        status = None if _CONDITIONS.isdisjoint(params) else check_conditions(record, params)
        out = object_headers(record)
        out.update(lifecycle.expiration_header(s3.store, record))
        if status == 304:
            return {"ETag": record.etag, "LastModified": record.last_modified, "__status": 304}
        first, last = 0, record.size - 1
        part_number = params.get("PartNumber")
        if part_number is not None:
            first, last = _part_range(record, part_number)
            out["ContentRange"] = f"bytes {first}-{last}/{record.size}"
            out["__status"] = 206
        elif params.get("Range"):
            found = parse_range(params["Range"], record.size)
            if found is not None:
                first, last = found
                out["ContentRange"] = f"bytes {first}-{last}/{record.size}"
                out["__status"] = 206
        out["ContentLength"] = max(last - first + 1, 0)
        if params.get("ChecksumMode") == "ENABLED" and "__status" not in out:
            out.update(checksum_fields(record))
        # Most GETs override no header: one set test instead of six look-ups.
        overrides = () if _RESPONSE_OVERRIDES.isdisjoint(params) else RESPONSE_OVERRIDES
        for name in overrides:
            override = params.get(f"Response{name}")
            if override is not None:
                out[name] = override
        if ctx.request.method != "HEAD":
            out["Body"] = await s3.body(record, first, last) if record.size else b""
        return out

    async def head_object(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await get_object(ctx, params)

    async def delete_object(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket, key = params["Bucket"], params["Key"]
        s3.bucket(ctx, bucket)
        if params.get("IfMatch") is not None:
            record = s3.store.get_object(bucket, key)
            if record is None:
                raise errors.no_such_key(key)
            if not _etag_matches(params["IfMatch"], record.etag):
                raise errors.precondition_failed("If-Match")
        return delete_one(s3, bucket, key, params.get("VersionId"),
                          lock.may_bypass(s3.store, ctx, bucket, params))

    async def delete_objects(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = params["Bucket"]
        s3.bucket(ctx, bucket)
        request = params.get("Delete") or {}
        objects = request.get("Objects") or []
        if not objects or len(objects) > 1000:
            raise AwsError("MalformedXML", "The XML you provided was not well-formed or did "
                           "not validate against our published schema", 400)
        deleted: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        bypass = lock.may_bypass(s3.store, ctx, bucket, params)
        for item in objects:
            key = item.get("Key", "")
            if not key:
                failed.append({"Key": key, "Code": "InvalidArgument",
                               "Message": "Object key must not be empty."})
                continue
            try:
                result = delete_one(s3, bucket, key, item.get("VersionId"), bypass)
            except AwsError as error:
                failed.append({k: v for k, v in {
                    "Key": key, "VersionId": item.get("VersionId"), "Code": error.code,
                    "Message": error.message}.items() if v is not None})
                continue
            entry = {"Key": key, "VersionId": item.get("VersionId")}
            if result.get("DeleteMarker"):
                entry["DeleteMarker"] = True
                entry["DeleteMarkerVersionId"] = result["VersionId"]
            deleted.append({k: v for k, v in entry.items() if v is not None})
        out: dict[str, Any] = {"Errors": failed} if failed else {}
        if not request.get("Quiet"):
            out["Deleted"] = deleted
        return out

    async def copy_object(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket, key = params["Bucket"], params["Key"]
        target = s3.bucket(ctx, bucket)
        check_key(key)
        source = copy_source(s3, ctx, params["CopySource"])
        check_conditions(source, params, prefix="CopySource")
        directive = params.get("MetadataDirective", "COPY")
        if directive not in ("COPY", "REPLACE"):
            raise errors.invalid_argument("Unknown metadata directive.",
                                          "x-amz-metadata-directive", directive)
        klass = storage_class(params) if params.get("StorageClass") else source.storage_class
        if (source.bucket, source.key) == (bucket, key) and directive == "COPY" \
                and not params.get("StorageClass") and not params.get("WebsiteRedirectLocation"):
            raise AwsError(
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself "
                "without changing the object's metadata, storage class, website redirect "
                "location or encryption attributes.", 400)
        headers = content_headers(params) if directive == "REPLACE" else {
            k: v for k, v in source.headers.items() if k not in ("Tags", "Lock", "ACL", "Owner",
                                                                  "CompletedUpload")}
        tagging_directive = params.get("TaggingDirective", "COPY")
        if tagging_directive not in ("COPY", "REPLACE"):
            raise errors.invalid_argument("Unknown tagging directive.",
                                          "x-amz-tagging-directive", tagging_directive)
        tags = tags_from_header(params.get("Tagging")) if tagging_directive == "REPLACE" \
            else source.headers.get("Tags", [])
        if tags:
            headers["Tags"] = tags
        headers.update(object_acl(s3.store, ctx, target, params))
        lock.stamp(s3.store, bucket, params, headers)
        algorithm = params.get("ChecksumAlgorithm")
        checksums = dict(source.checksums)
        if algorithm and algorithm.upper() in ALGORITHMS \
                and (algorithm.upper() not in checksums or "-" in checksums[algorithm.upper()]):
            checksums = {algorithm.upper(): await asyncio.to_thread(
                s3.digest, source.segments, algorithm.upper())}
        segments = await asyncio.to_thread(s3.store.copy_segments, source.segments, bucket)
        record = ObjectRecord(
            bucket=bucket, key=key, size=source.size, etag=source.etag, last_modified=now(),
            storage_class=klass, segments=segments, headers=headers, checksums=checksums,
        )
        try:
            replaced = s3.store.put_object(record)
        except BaseException:
            s3.store.discard([b for b, _ in segments])
            raise
        s3.store.discard(replaced)
        result: dict[str, Any] = {"ETag": record.etag, "LastModified": record.last_modified}
        result.update({k: v for k, v in checksum_fields(record).items() if k != "ChecksumType"})
        return {"CopyObjectResult": result, "VersionId": written_version(record),
                "CopySourceVersionId": source.version_id}

    async def get_object_attributes(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record = s3.object(ctx, params["Bucket"], params["Key"])
        wanted = set(params.get("ObjectAttributes") or [])
        known = {"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"}
        if not wanted or not wanted <= known:
            raise errors.invalid_argument("Invalid attribute name specified.",
                                          "x-amz-object-attributes", ",".join(sorted(wanted)))
        out: dict[str, Any] = {"LastModified": record.last_modified}
        if "ETag" in wanted:
            out["ETag"] = record.etag.strip('"')
        if "StorageClass" in wanted:
            out["StorageClass"] = record.storage_class
        if "ObjectSize" in wanted:
            out["ObjectSize"] = record.size
        if "Checksum" in wanted and record.checksums:
            out["Checksum"] = checksum_fields(record)
        if "ObjectParts" in wanted and "-" in record.etag:
            marker = params.get("PartNumberMarker") or 0
            limit = params.get("MaxParts") or 1000
            numbered = list(enumerate(record.segments, start=1))
            after = [(n, size) for n, (_, size) in numbered if n > marker]
            page = after[:limit]
            out["ObjectParts"] = {
                "TotalPartsCount": len(record.segments),
                "PartNumberMarker": marker,
                "MaxParts": limit,
                "IsTruncated": len(after) > limit,
                "NextPartNumberMarker": page[-1][0] if page else marker,
                "Parts": [{"PartNumber": n, "Size": size} for n, size in page],
            }
        return out

    return {
        "GetObjectAttributes": get_object_attributes,
        "PutObject": put_object,
        "GetObject": get_object,
        "HeadObject": head_object,
        "DeleteObject": delete_object,
        "DeleteObjects": delete_objects,
        "CopyObject": copy_object,
    }


def _put_answer(s3: S3Backend, record: ObjectRecord) -> dict[str, Any]:
    return {"ETag": record.etag, "VersionId": written_version(record),
            **checksum_fields(record), **lifecycle.expiration_header(s3.store, record)}


def written_version(record: ObjectRecord) -> str | None:
    """The x-amz-version-id a write answers with: none for a suspended bucket's null version,
    as AWS's PutObject examples show."""
    return None if record.version_id == "null" else record.version_id


def _succeeded(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _check_write_conditions(s3: S3Backend, bucket: str, key: str, params: dict[str, Any]) -> None:
    """Conditional writes: If-None-Match: * and If-Match: etag on PUT."""
    if_none_match, if_match = params.get("IfNoneMatch"), params.get("IfMatch")
    if if_none_match is None and if_match is None:
        return
    current = s3.store.get_object(bucket, key)
    if if_none_match is not None and current is not None:
        raise errors.precondition_failed("If-None-Match")
    if if_match is not None:
        if current is None:
            raise errors.no_such_key(key)
        if not _etag_matches(if_match, current.etag):
            raise errors.precondition_failed("If-Match")


def _part_range(record: ObjectRecord, part_number: int) -> tuple[int, int]:
    if not 1 <= part_number <= max(len(record.segments), 1):
        raise AwsError("InvalidPartNumber", "The requested partnumber is not satisfiable", 416)
    first = sum(size for _, size in record.segments[: part_number - 1])
    return first, first + record.segments[part_number - 1][1] - 1


def copy_source(s3: S3Backend, ctx: RequestContext, header: str) -> ObjectRecord:
    """The object named by x-amz-copy-source ('bucket/key[?versionId=v]', URL-encoded)."""
    path, _, version = header.partition("?versionId=")
    text = unquote(path).lstrip("/")
    bucket, _, key = text.partition("/")
    if not bucket or not key:
        raise errors.invalid_argument("Invalid copy source object key",
                                      "x-amz-copy-source", header)
    version_id = unquote(version) if version else None
    return s3.object(as_source_read(ctx, key, version_id), bucket, key, version_id)


def delete_one(s3: S3Backend, bucket: str, key: str, version_id: str | None,
               bypass: bool = False) -> dict[str, Any]:
    """DeleteObject's effect and answer, for one key (and version).

    `bypass`: the caller may and asked to bypass GOVERNANCE retention.
    """
    if version_id is not None:
        lock.check_delete(s3.store, bucket, key, version_id, bypass)
        victim, freed = s3.store.delete_version(bucket, key, version_id)
        s3.store.discard(freed)
        out: dict[str, Any] = {"VersionId": version_id}
        if victim is not None and victim.delete_marker:
            out["DeleteMarker"] = True
        return out
    freed, marker = s3.store.delete_current(bucket, key)
    s3.store.discard(freed)
    if marker is None:
        return {}
    return {"DeleteMarker": True, "VersionId": marker.version_id}
