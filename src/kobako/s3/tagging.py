"""Object and bucket tagging, with AWS's limits and error codes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from kobako.protocol.errors import AwsError
from kobako.s3 import configs, errors
from kobako.s3.backend import S3Backend
from kobako.server.service import Handler, RequestContext

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50


def _invalid_tag(message: str) -> AwsError:
    return AwsError("InvalidTag", message, 400)


def check_tags(pairs: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    """Validate tags as S3 does: count, key and value lengths, unique keys."""
    if len(pairs) > limit:
        if limit == MAX_OBJECT_TAGS:
            raise AwsError("BadRequest", "Object tags cannot be greater than 10", 400)
        raise _invalid_tag(f"Bucket tag count cannot be greater than {limit}")
    seen: set[str] = set()
    for key, value in pairs:
        if not key or len(key) > 128:
            raise _invalid_tag("The TagKey you have provided is invalid")
        if len(value) > 256:
            raise _invalid_tag("The TagValue you have provided is too long, max length is 256")
        if key.lower().startswith("aws:"):
            raise _invalid_tag("System tags cannot be added/updated by requester")
        if key in seen:
            raise _invalid_tag("Cannot provide multiple Tags with the same key")
        seen.add(key)
    return pairs


def tags_from_header(header: str | None) -> list[tuple[str, str]]:
    """The x-amz-tagging header: a URL-encoded query string of key=value pairs."""
    if not header:
        return []
    return check_tags(parse_qsl(header, keep_blank_values=True), MAX_OBJECT_TAGS)


def _tag_set(params: dict[str, Any], limit: int) -> list[tuple[str, str]]:
    tagging = params.get("Tagging") or {}
    pairs = [(t.get("Key", ""), t.get("Value", "")) for t in tagging.get("TagSet") or []]
    return check_tags(pairs, limit)


def _as_tag_set(pairs: list[list[str]] | list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in pairs]


def build_handlers(s3: S3Backend) -> dict[str, Handler]:
    async def put_object_tagging(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = s3.object(ctx, params["Bucket"], params["Key"])
        headers = dict(record.headers)
        headers["Tags"] = _tag_set(params, MAX_OBJECT_TAGS)
        if not s3.store.set_object_headers(record.bucket, record.key, headers):
            raise errors.no_such_key(record.key)
        return {}

    async def get_object_tagging(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = s3.object(ctx, params["Bucket"], params["Key"])
        return {"TagSet": _as_tag_set(record.headers.get("Tags", []))}

    async def delete_object_tagging(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record = s3.object(ctx, params["Bucket"], params["Key"])
        headers = {k: v for k, v in record.headers.items() if k != "Tags"}
        s3.store.set_object_headers(record.bucket, record.key, headers)
        return {}

    async def put_bucket_tagging(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        s3.store.set_config(bucket.name, "tagging", _tag_set(params, MAX_BUCKET_TAGS))
        return {}

    async def get_bucket_tagging(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        pairs = s3.store.get_config(bucket.name, "tagging")
        if pairs is None:
            raise errors.no_bucket_config("NoSuchTagSet", "The TagSet does not exist",
                                          bucket.name)
        return {"TagSet": _as_tag_set(pairs)}

    return {
        "PutObjectTagging": put_object_tagging,
        "GetObjectTagging": get_object_tagging,
        "DeleteObjectTagging": delete_object_tagging,
        "PutBucketTagging": put_bucket_tagging,
        "GetBucketTagging": get_bucket_tagging,
        "DeleteBucketTagging": configs.deleter(s3, "tagging"),
    }
