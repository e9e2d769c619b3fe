"""Bucket operations: create, head, list, delete, location."""

from __future__ import annotations

import functools
from typing import Any

from kobako.protocol.codecs import XML_DECLARATION
from kobako.protocol.errors import AwsError
from kobako.protocol.http import HttpResponse
from kobako.s3 import errors, lock, publicaccess
from kobako.s3.access import requested_grants
from kobako.s3.backend import S3Backend, canonical_user_id
from kobako.s3.names import check_bucket_name
from kobako.s3.store import Bucket, now
from kobako.server.service import Handler, RequestContext
from kobako.spec import service_model

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


@functools.cache
def _regions() -> frozenset[str]:
    """The LocationConstraint values S3's model knows (its BucketLocationConstraint)."""
    return frozenset(service_model("s3").shape_for("BucketLocationConstraint").enum)


def _region_of(constraint: str | None, request_region: str) -> str:
    """The region a bucket is created in, or the error AWS gives for the constraint."""
    if constraint == "us-east-1" or (constraint is not None and constraint not in _regions()):
        raise AwsError("InvalidLocationConstraint",
                       "The specified location-constraint is not valid", 400,
                       fields={"LocationConstraint": constraint})
    if constraint is None and request_region != "us-east-1":
        raise AwsError(
            "IllegalLocationConstraintException",
            "The unspecified location constraint is incompatible for the region specific "
            "endpoint this request was sent to.", 400)
    if constraint is not None and constraint != request_region:
        raise AwsError(
            "IllegalLocationConstraintException",
            f"The {constraint} location constraint is incompatible for the region specific "
            "endpoint this request was sent to.", 400)
    return constraint or "us-east-1"


def build_handlers(s3: S3Backend) -> dict[str, Handler]:
    async def create_bucket(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Bucket"]
        if ctx.anonymous:
            raise errors.access_denied()
        check_bucket_name(name)
        grants = requested_grants(params, ctx.account_id)
        ownership = params.get("ObjectOwnership")
        if ownership is not None and ownership not in publicaccess.OWNERSHIPS:
            raise errors.invalid_argument("Invalid x-amz-object-ownership header",
                                          "x-amz-object-ownership", str(ownership))
        if ownership == publicaccess.ENFORCED and grants is not None and not (
                params["ACL"] in publicaccess.OWNER_ONLY_CANNED if params.get("ACL")
                else publicaccess.owner_only(grants, ctx.account_id)):
            raise publicaccess.invalid_acl_with_ownership()
        config = params.get("CreateBucketConfiguration") or {}
        constraint = config.get("LocationConstraint")
        # A configured data backend's name puts the bucket's bytes there (kobako's own
        # extension of LocationConstraint, as Zenko does); the region stays the request's.
        backend = constraint if constraint and s3.store.blobs.has_backend(constraint) \
            else None
        if backend is None:
            region = _region_of(constraint, ctx.region)
        else:
            region = ctx.region or "us-east-1"
        bucket = Bucket(name, ctx.account_id, ctx.credential.display_name, region, now(),
                        backend)
        if not s3.store.create_bucket(bucket):
            existing = s3.store.get_bucket(name)
            if existing is not None and existing.account_id == ctx.account_id:
                if existing.region == "us-east-1" and region == "us-east-1" \
                        and existing.backend == backend:
                    return {"Location": f"/{name}"}  # us-east-1 answers 200, as AWS does
                raise AwsError("BucketAlreadyOwnedByYou",
                               "Your previous request to create the named bucket succeeded and "
                               "you already own it.", 409, fields={"BucketName": name})
            raise AwsError("BucketAlreadyExists",
                           "The requested bucket name is not available. The bucket namespace "
                           "is shared by all users of the system. Please select a different "
                           "name and try again.", 409, fields={"BucketName": name})
        if grants is not None:
            s3.store.set_config(name, "acl", grants)
        if ownership is not None:
            s3.store.set_config(name, "ownership", ownership)
        if params.get("ObjectLockEnabledForBucket"):
            lock.enable_on_create(s3.store, name)
        return {"Location": f"/{name}",
                "BucketArn": f"arn:aws:s3:::{name}"}

    async def head_bucket(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        return {"BucketRegion": bucket.region, "AccessPointAlias": False}

    async def list_buckets(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if ctx.anonymous:
            raise errors.access_denied()
        buckets = s3.store.list_buckets(ctx.account_id)
        prefix = params.get("Prefix")
        if prefix:
            buckets = [b for b in buckets if b.name.startswith(prefix)]
        if params.get("BucketRegion"):
            buckets = [b for b in buckets if b.region == params["BucketRegion"]]
        after = params.get("ContinuationToken") or ""
        buckets = [b for b in buckets if b.name > after]
        limit = params.get("MaxBuckets") or 10000
        page = buckets[:limit]
        out: dict[str, Any] = {
            "Buckets": [
                {"Name": b.name, "CreationDate": b.created, "BucketRegion": b.region}
                for b in page
            ],
            "Owner": {"ID": canonical_user_id(ctx.account_id),
                      "DisplayName": ctx.credential.display_name},
        }
        if prefix:
            out["Prefix"] = prefix
        if len(buckets) > limit:
            out["ContinuationToken"] = page[-1].name
        return out

    async def delete_bucket(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        if not s3.store.bucket_is_empty(bucket.name):
            raise AwsError("BucketNotEmpty", "The bucket you tried to delete is not empty", 409,
                           fields={"BucketName": bucket.name})
        s3.store.discard(s3.store.delete_bucket(bucket.name))
        return {}

    async def get_bucket_location(ctx: RequestContext, params: dict[str, Any]) -> Any:
        bucket = s3.bucket(ctx, params["Bucket"])
        region = bucket.backend or ("" if bucket.region == "us-east-1" else bucket.region)
        # botocore reads this root element's text itself; the model has no shape for it.
        body = f'{XML_DECLARATION}<LocationConstraint xmlns="{XMLNS}">{region}</LocationConstraint>'
        return HttpResponse(200, [("Content-Type", "application/xml")], body.encode())

    return {
        "CreateBucket": create_bucket,
        "HeadBucket": head_bucket,
        "ListBuckets": list_buckets,
        "DeleteBucket": delete_bucket,
        "GetBucketLocation": get_bucket_location,
    }


__all__ = ["build_handlers", "errors"]
