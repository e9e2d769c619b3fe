"""ListObjects (v1) and ListObjectsV2: prefix, delimiter, pagination, URL encoding."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from kobako.s3 import errors
from kobako.s3.backend import S3Backend, canonical_user_id
from kobako.s3.store import ObjectRecord
from kobako.server.service import Handler, RequestContext

_BATCH = 1000


@dataclass
class Page:
    objects: list[ObjectRecord] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    last: str = ""  # the last key or common prefix returned: where the next page starts


def _after_prefix(prefix: str) -> str:
    """The greatest string that still starts with `prefix`: skip a whole group."""
    return prefix + "\U0010ffff"


def list_page(
    s3: S3Backend, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
) -> Page:
    """One page of a listing, grouping keys under common prefixes as S3 does.

    A common prefix that `after` lies in was returned on an earlier page, so it is
    skipped; after a group the scan jumps past all of its keys.
    """
    page = Page()
    cursor = after
    while max_keys > 0:
        batch = s3.store.list_objects(bucket, prefix, cursor, _BATCH)
        for record in batch:
            cursor = record.key
            common = ""
            if delimiter:
                cut = record.key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = record.key[: cut + len(delimiter)]
                    cursor = _after_prefix(common)
                    if after.startswith(common):
                        break
            if len(page.objects) + len(page.prefixes) == max_keys:
                page.truncated = True
                return page
            if common:
                page.prefixes.append(common)
                page.last = common
                break
            page.objects.append(record)
            page.last = record.key
        else:
            if len(batch) < _BATCH:
                return page
    return page


def _max_keys(params: dict[str, Any]) -> int:
    value = params.get("MaxKeys", 1000)
    if value < 0:
        raise errors.invalid_argument("Argument maxKeys must be an integer between 0 and "
                                      "2147483647", "maxKeys", str(value))
    return min(int(value), 1000)


def _encoder(params: dict[str, Any]) -> Any:
    encoding = params.get("EncodingType")
    if encoding not in (None, "url"):
        raise errors.invalid_argument("Invalid Encoding Method specified in Request",
                                      "encoding-type", str(encoding))
    if encoding == "url":
        return lambda text: quote(text, safe="/") if text else text
    return lambda text: text


def _contents(records: list[ObjectRecord], encode: Any, owner: dict[str, str] | None) -> list[Any]:
    out = []
    for record in records:
        item: dict[str, Any] = {
            "Key": encode(record.key),
            "LastModified": record.last_modified,
            "ETag": record.etag,
            "Size": record.size,
            "StorageClass": record.storage_class,
        }
        if record.checksums:
            item["ChecksumAlgorithm"] = sorted(record.checksums)
            item["ChecksumType"] = "COMPOSITE" if any(
                "-" in v for v in record.checksums.values()) else "FULL_OBJECT"
        if owner:
            item["Owner"] = owner
        out.append(item)
    return out


def build_handlers(s3: S3Backend) -> dict[str, Handler]:
    async def list_objects_v2(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        encode = _encoder(params)
        max_keys = _max_keys(params)
        prefix, delimiter = params.get("Prefix", ""), params.get("Delimiter", "")
        token = params.get("ContinuationToken")
        after = params.get("StartAfter", "")
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise errors.invalid_argument("The continuation token provided is incorrect",
                                              "continuation-token", token) from None
        page = list_page(s3, bucket.name, prefix, delimiter, after, max_keys)
        owner = None
        if params.get("FetchOwner"):
            owner = {"ID": canonical_user_id(bucket.account_id), "DisplayName": bucket.owner_name}
        out: dict[str, Any] = {
            "Name": bucket.name,
            "Prefix": encode(prefix),
            "MaxKeys": max_keys,
            "KeyCount": len(page.objects) + len(page.prefixes),
            "IsTruncated": page.truncated,
            "Contents": _contents(page.objects, encode, owner) or None,
            "CommonPrefixes": [{"Prefix": encode(p)} for p in page.prefixes] or None,
        }
        if delimiter:
            out["Delimiter"] = encode(delimiter)
        if params.get("EncodingType"):
            out["EncodingType"] = params["EncodingType"]
        if token is not None:
            out["ContinuationToken"] = token
        if params.get("StartAfter"):
            out["StartAfter"] = encode(params["StartAfter"])
        if page.truncated:
            out["NextContinuationToken"] = base64.urlsafe_b64encode(page.last.encode()).decode()
        return out

    async def list_objects(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        encode = _encoder(params)
        max_keys = _max_keys(params)
        prefix, delimiter = params.get("Prefix", ""), params.get("Delimiter", "")
        marker = params.get("Marker", "")
        page = list_page(s3, bucket.name, prefix, delimiter, marker, max_keys)
        owner = {"ID": canonical_user_id(bucket.account_id), "DisplayName": bucket.owner_name}
        out: dict[str, Any] = {
            "Name": bucket.name,
            "Prefix": encode(prefix),
            "Marker": encode(marker),
            "MaxKeys": max_keys,
            "IsTruncated": page.truncated,
            "Contents": _contents(page.objects, encode, owner) or None,
            "CommonPrefixes": [{"Prefix": encode(p)} for p in page.prefixes] or None,
        }
        if delimiter:
            out["Delimiter"] = encode(delimiter)
            if page.truncated:
                out["NextMarker"] = encode(page.last)
        if params.get("EncodingType"):
            out["EncodingType"] = params["EncodingType"]
        return out

    return {"ListObjectsV2": list_objects_v2, "ListObjects": list_objects}
