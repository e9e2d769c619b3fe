"""Bucket versioning: Put/GetBucketVersioning and ListObjectVersions."""

from __future__ import annotations

from typing import Any

from kobako.protocol.errors import AwsError
from kobako.s3 import errors, lock
from kobako.s3.backend import S3Backend, canonical_user_id
from kobako.s3.listing import _after_prefix, _encoder, _max_keys
from kobako.s3.store import ObjectRecord, versioning_status
from kobako.server.service import Handler, RequestContext

_BATCH = 1000


def _entry(record: ObjectRecord, latest: bool, owner: dict[str, str], encode: Any) -> Any:
    item: dict[str, Any] = {
        "Key": encode(record.key),
        "VersionId": record.version_id or "null",
        "IsLatest": latest,
        "LastModified": record.last_modified,
        "Owner": owner,
    }
    if not record.delete_marker:
        item.update({"ETag": record.etag, "Size": record.size,
                     "StorageClass": record.storage_class})
    return item


def build_handlers(s3: S3Backend) -> dict[str, Handler]:
    async def put_bucket_versioning(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        config = params.get("VersioningConfiguration") or {}
        status = config.get("Status")
        if status not in ("Enabled", "Suspended"):
            raise errors.malformed_xml()
        if config.get("MFADelete") == "Enabled":
            raise AwsError("InvalidRequest", "MFA delete is not supported by kobako.", 400)
        lock.check_versioning_change(s3.store, bucket.name, status)
        s3.store.enable_versioning(bucket.name, status)
        return {}

    async def get_bucket_versioning(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        status = versioning_status(s3.store, bucket.name)
        return {"Status": status} if status else {}

    async def list_object_versions(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        encode = _encoder(params)
        max_keys = _max_keys(params)
        prefix, delimiter = params.get("Prefix", ""), params.get("Delimiter", "")
        key_marker = params.get("KeyMarker", "")
        id_marker = params.get("VersionIdMarker")
        owner = {"ID": canonical_user_id(bucket.account_id), "DisplayName": bucket.owner_name}
        after_seq: int | None = None
        if id_marker:
            if not key_marker:
                raise errors.invalid_argument("A version-id marker cannot be specified without "
                                              "a key marker.", "version-id-marker", id_marker)
            after_seq = s3.store.version_seq(bucket.name, key_marker, id_marker)
            if after_seq is None:
                raise errors.invalid_argument("Invalid version id specified",
                                              "version-id-marker", id_marker)
        versions: list[Any] = []
        markers: list[Any] = []
        prefixes: list[str] = []
        latest_seq: dict[str, int] = {}
        truncated = False
        last: tuple[str, str] = ("", "")
        cursor_key, cursor_seq = key_marker, after_seq
        unversioned = versioning_status(s3.store, bucket.name) is None
        while max_keys > 0 and not truncated:
            if unversioned:
                rows = [(0, r) for r in s3.store.list_objects(
                    bucket.name, prefix, cursor_key, _BATCH)]
            else:
                rows = s3.store.list_versions(bucket.name, prefix, cursor_key, cursor_seq,
                                              _BATCH)
            if not rows:
                break
            for seq, record in rows:
                cursor_key, cursor_seq = record.key, seq if not unversioned else None
                if delimiter:
                    cut = record.key.find(delimiter, len(prefix))
                    if cut >= 0:
                        common = record.key[: cut + len(delimiter)]
                        cursor_key, cursor_seq = _after_prefix(common), None
                        if key_marker.startswith(common):
                            break
                        if len(versions) + len(markers) + len(prefixes) == max_keys:
                            truncated = True
                            break
                        prefixes.append(common)
                        last = (common, "")
                        break
                if len(versions) + len(markers) + len(prefixes) == max_keys:
                    truncated = True
                    break
                if record.key not in latest_seq:
                    newest = s3.store.latest_version(bucket.name, record.key)
                    latest_seq[record.key] = seq if unversioned or newest is None else \
                        s3.store.version_seq(bucket.name, record.key,
                                             newest.version_id or "null") or seq
                entry = _entry(record, latest_seq[record.key] == seq, owner, encode)
                (markers if record.delete_marker else versions).append(entry)
                last = (record.key, record.version_id or "null")
            else:
                if len(rows) < _BATCH:
                    break
        out: dict[str, Any] = {
            "Name": bucket.name, "Prefix": encode(prefix), "KeyMarker": encode(key_marker),
            "VersionIdMarker": id_marker or "", "MaxKeys": max_keys, "IsTruncated": truncated,
            "Versions": versions or None, "DeleteMarkers": markers or None,
            "CommonPrefixes": [{"Prefix": encode(p)} for p in prefixes] or None,
        }
        if delimiter:
            out["Delimiter"] = encode(delimiter)
        if params.get("EncodingType"):
            out["EncodingType"] = params["EncodingType"]
        if truncated:
            out["NextKeyMarker"] = encode(last[0])
            if last[1]:
                out["NextVersionIdMarker"] = last[1]
        return out

    return {
        "PutBucketVersioning": put_bucket_versioning,
        "GetBucketVersioning": get_bucket_versioning,
        "ListObjectVersions": list_object_versions,
    }
