"""Multipart uploads: create, upload part (and copy), list, complete, abort."""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.s3 import errors, lock
from kobako.s3.access import object_acl
from kobako.s3.backend import S3Backend, canonical_user_id, content_headers, storage_class
from kobako.s3.checksums import ALGORITHMS, composite_checksum, multipart_etag
from kobako.s3.names import check_key
from kobako.s3.objects import check_conditions, copy_source, parse_range, written_version
from kobako.s3.store import ObjectRecord, Part, Upload, now
from kobako.s3.tagging import tags_from_header
from kobako.server.service import Handler, RequestContext

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10000


def _part_number(params: dict[str, Any]) -> int:
    number = params["PartNumber"]
    if not 1 <= number <= MAX_PART_NUMBER:
        raise errors.invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive",
            "partNumber", str(number))
    return int(number)


# Kept in an upload's headers: who initiated it (ListParts, ListMultipartUploads).
INITIATOR = "Initiator"
# Kept in a completed object's headers: the upload it came from, so that completing
# that upload again answers as the first completion did.
COMPLETED_UPLOAD = "CompletedUpload"


def initiator(upload: Upload, ctx: RequestContext) -> dict[str, str]:
    """Who started the upload (uploads from before this was kept: the caller)."""
    found = upload.headers.get(INITIATOR)
    if isinstance(found, dict):
        return dict(found)
    return {"ID": canonical_user_id(ctx.account_id), "DisplayName": ctx.credential.display_name}


def build_handlers(s3: S3Backend) -> dict[str, Handler]:
    def upload_of(ctx: RequestContext, params: dict[str, Any]) -> Upload:
        s3.bucket(ctx, params["Bucket"])
        upload = s3.store.get_upload(params["UploadId"])
        if upload is None or (upload.bucket, upload.key) != (params["Bucket"], params["Key"]):
            raise errors.no_such_upload(params["UploadId"])
        return upload

    async def create(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket, key = params["Bucket"], params["Key"]
        owner = s3.bucket(ctx, bucket)
        check_key(key)
        algorithm = params.get("ChecksumAlgorithm")
        if algorithm and algorithm.upper() not in ALGORITHMS:
            raise errors.invalid_argument("Checksum algorithm provided is unsupported.",
                                          "x-amz-checksum-algorithm", algorithm)
        headers = content_headers(params) | (
            {"Tags": tags} if (tags := tags_from_header(params.get("Tagging"))) else {})
        headers.update(object_acl(s3.store, ctx, owner, params))
        lock.stamp(s3.store, bucket, params, headers)
        headers[INITIATOR] = {"ID": canonical_user_id(ctx.account_id),
                              "DisplayName": ctx.credential.display_name}
        upload = Upload(
            upload_id=base64.urlsafe_b64encode(secrets.token_bytes(48)).decode(),
            bucket=bucket, key=key, initiated=now(), storage_class=storage_class(params),
            headers=headers,
            checksum_algorithm=algorithm.upper() if algorithm else None,
        )
        s3.store.create_upload(upload)
        out: dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload.upload_id}
        if upload.checksum_algorithm:
            out["ChecksumAlgorithm"] = upload.checksum_algorithm
            out["ChecksumType"] = "COMPOSITE"
        return out

    async def upload_part(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        number = _part_number(params)
        upload = upload_of(ctx, params)
        if upload.checksum_algorithm and not params.get("ChecksumAlgorithm"):
            params["ChecksumAlgorithm"] = upload.checksum_algorithm
        trailer = ctx.request.headers.get("x-amz-trailer", "")
        ingested, checksums = await s3.ingest_body(params["Body"], params, trailer)
        part = Part(number, ingested.blob_id, ingested.size, f'"{ingested.md5.hex()}"', now(),
                    checksums)
        replaced = s3.store.put_part(upload.upload_id, part)
        if replaced is None:
            s3.store.discard([ingested.blob_id])
            raise errors.no_such_upload(upload.upload_id)
        s3.store.discard(replaced)
        return {"ETag": part.etag, **{f"Checksum{a}": v for a, v in checksums.items()}}

    async def upload_part_copy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        number = _part_number(params)
        upload = upload_of(ctx, params)
        source = copy_source(s3, ctx, params["CopySource"])
        check_conditions(source, params, prefix="CopySource")
        first, last = 0, source.size - 1
        if params.get("CopySourceRange"):
            found = parse_range(params["CopySourceRange"], source.size)
            if found is None or params["CopySourceRange"].startswith("bytes=-"):
                raise errors.invalid_argument(
                    "The x-amz-copy-source-range value must be of the form bytes=first-last "
                    "where first and last are the zero-based offsets of the first and last "
                    "bytes to copy", "x-amz-copy-source-range", params["CopySourceRange"])
            first, last = found
            wanted_last = params["CopySourceRange"].strip().rpartition("-")[2]
            if wanted_last.isdigit() and int(wanted_last) >= source.size:
                raise errors.invalid_argument(
                    f"Range specified is not valid for source object of size: {source.size}",
                    "x-amz-copy-source-range", params["CopySourceRange"])

        async def pieces() -> Any:
            body = s3.read(source, first, last) if source.size else b""
            if isinstance(body, bytes):
                yield body
            else:
                async for piece in body:
                    yield piece

        algorithms = {upload.checksum_algorithm} if upload.checksum_algorithm else set()
        ingested = await s3.store.ingest(pieces(), algorithms, upload.bucket)
        checksums = {a: base64.b64encode(d).decode() for a, d in ingested.digests.items()}
        part = Part(number, ingested.blob_id, ingested.size, f'"{ingested.md5.hex()}"', now(),
                    checksums)
        replaced = s3.store.put_part(upload.upload_id, part)
        if replaced is None:
            s3.store.discard([ingested.blob_id])
            raise errors.no_such_upload(upload.upload_id)
        s3.store.discard(replaced)
        result = {"ETag": part.etag, "LastModified": part.last_modified}
        result.update({f"Checksum{a}": v for a, v in checksums.items()})
        return {"CopyPartResult": result}

    async def list_parts(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        upload = upload_of(ctx, params)
        marker = params.get("PartNumberMarker") or 0
        max_parts = min(params.get("MaxParts", 1000), 1000)
        parts = [p for p in s3.store.list_parts(upload.upload_id) if p.part_number > int(marker)]
        page = parts[:max_parts]
        owner = initiator(upload, ctx)
        out: dict[str, Any] = {
            "Bucket": upload.bucket, "Key": upload.key, "UploadId": upload.upload_id,
            "PartNumberMarker": int(marker), "MaxParts": max_parts,
            "IsTruncated": len(parts) > max_parts,
            "Parts": [
                {"PartNumber": p.part_number, "LastModified": p.last_modified, "ETag": p.etag,
                 "Size": p.size, **{f"Checksum{a}": v for a, v in p.checksums.items()}}
                for p in page
            ],
            "Initiator": owner, "Owner": owner, "StorageClass": upload.storage_class,
        }
        if page:
            out["NextPartNumberMarker"] = page[-1].part_number
        if upload.checksum_algorithm:
            out["ChecksumAlgorithm"] = upload.checksum_algorithm
            out["ChecksumType"] = "COMPOSITE"
        return out

    async def list_uploads(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        prefix = params.get("Prefix", "")
        delimiter = params.get("Delimiter", "")
        key_marker = params.get("KeyMarker", "")
        id_marker = params.get("UploadIdMarker", "")
        max_uploads = min(params.get("MaxUploads", 1000), 1000)
        uploads: list[dict[str, Any]] = []
        prefixes: list[str] = []
        truncated = False
        last_key = last_id = ""
        for upload in s3.store.list_uploads(bucket.name, prefix):
            if key_marker and (upload.key < key_marker or (
                    upload.key == key_marker and (not id_marker or upload.upload_id <= id_marker))):
                continue
            if delimiter:
                cut = upload.key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = upload.key[: cut + len(delimiter)]
                    if common in prefixes:
                        continue
                    if len(uploads) + len(prefixes) == max_uploads:
                        truncated = True
                        break
                    prefixes.append(common)
                    last_key, last_id = common, ""
                    continue
            if len(uploads) + len(prefixes) == max_uploads:
                truncated = True
                break
            uploads.append({
                "UploadId": upload.upload_id, "Key": upload.key, "Initiated": upload.initiated,
                "StorageClass": upload.storage_class, "Owner": initiator(upload, ctx),
                "Initiator": initiator(upload, ctx),
                **({"ChecksumAlgorithm": upload.checksum_algorithm}
                   if upload.checksum_algorithm else {}),
            })
            last_key, last_id = upload.key, upload.upload_id
        out: dict[str, Any] = {
            "Bucket": bucket.name, "KeyMarker": key_marker, "UploadIdMarker": id_marker,
            "Prefix": prefix, "MaxUploads": max_uploads, "IsTruncated": truncated,
            "Uploads": uploads or None,
            "CommonPrefixes": [{"Prefix": p} for p in prefixes] or None,
        }
        if delimiter:
            out["Delimiter"] = delimiter
        if truncated:
            out["NextKeyMarker"], out["NextUploadIdMarker"] = last_key, last_id
        return out

    async def complete(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        try:
            upload = upload_of(ctx, params)
        except AwsError as error:
            done = s3.store.get_object(params["Bucket"], params["Key"])
            if error.code != "NoSuchUpload" or done is None \
                    or done.headers.get(COMPLETED_UPLOAD) != params["UploadId"]:
                raise
            # Completing again answers as the first completion did, as S3 does.
            return completed(ctx, done)
        requested = (params.get("MultipartUpload") or {}).get("Parts") or []
        if not requested:
            raise errors.malformed_xml()
        stored = {p.part_number: p for p in s3.store.list_parts(upload.upload_id)}
        chosen: list[Part] = []
        for index, item in enumerate(requested):
            number = item.get("PartNumber")
            if index and (number is None or number <= requested[index - 1].get("PartNumber", 0)):
                raise AwsError("InvalidPartOrder", "The list of parts was not in ascending "
                               "order. Parts must be ordered by part number.", 400,
                               fields={"UploadId": upload.upload_id})
            part = stored.get(number) if number is not None else None
            etag = (item.get("ETag") or "").strip('"')
            if part is None or etag != part.etag.strip('"'):
                raise AwsError("InvalidPart", "One or more of the specified parts could not be "
                               "found.  The part may not have been uploaded, or the specified "
                               "entity tag may not match the part's entity tag.", 400,
                               fields={"UploadId": upload.upload_id, "PartNumber": str(number),
                                       "ETag": item.get("ETag") or ""})
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < MIN_PART_SIZE:
                raise AwsError("EntityTooSmall", "Your proposed upload is smaller than the "
                               "minimum allowed object size.", 400,
                               fields={"ProposedSize": str(part.size),
                                       "MinSizeAllowed": str(MIN_PART_SIZE),
                                       "PartNumber": str(part.part_number),
                                       "ETag": part.etag})
        size = sum(p.size for p in chosen)
        if params.get("MpuObjectSize") is not None and params["MpuObjectSize"] != size:
            raise errors.invalid_argument("The provided 'x-amz-mp-object-size' header value "
                                          "does not match what was computed.")
        etag = multipart_etag([bytes.fromhex(p.etag.strip('"')) for p in chosen])
        checksums: dict[str, str] = {}
        algorithm = upload.checksum_algorithm
        if algorithm and all(algorithm in p.checksums for p in chosen):
            checksums[algorithm] = composite_checksum(
                algorithm, [base64.b64decode(p.checksums[algorithm]) for p in chosen])
        record = ObjectRecord(
            bucket=upload.bucket, key=upload.key, size=size, etag=etag, last_modified=now(),
            storage_class=upload.storage_class, segments=[(p.blob, p.size) for p in chosen],
            headers={k: v for k, v in upload.headers.items() if k != INITIATOR}
            | {COMPLETED_UPLOAD: upload.upload_id},
            checksums=checksums,
        )
        unused = await asyncio.to_thread(
            s3.store.complete_upload, upload.upload_id, record, {p.blob for p in chosen})
        s3.store.discard(unused)
        return completed(ctx, record)

    def completed(ctx: RequestContext, record: ObjectRecord) -> dict[str, Any]:
        host = ctx.request.host or "localhost"
        out: dict[str, Any] = {
            "Location": f"http://{host}/{record.bucket}/{record.key}",
            "Bucket": record.bucket, "Key": record.key, "ETag": record.etag,
            "VersionId": written_version(record),
        }
        for name, value in record.checksums.items():
            out[f"Checksum{name}"] = value
            out["ChecksumType"] = "COMPOSITE"
        return out

    async def abort(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        upload = upload_of(ctx, params)
        blobs = s3.store.abort_upload(upload.upload_id)
        if blobs is None:
            raise errors.no_such_upload(upload.upload_id)
        s3.store.discard(blobs)
        return {}

    return {
        "CreateMultipartUpload": create,
        "UploadPart": upload_part,
        "UploadPartCopy": upload_part_copy,
        "ListParts": list_parts,
        "ListMultipartUploads": list_uploads,
        "CompleteMultipartUpload": complete,
        "AbortMultipartUpload": abort,
    }
