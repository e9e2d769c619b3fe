"""Block Public Access and Object Ownership: the bucket settings that sit above ACLs
and policies (Put/Get/DeletePublicAccessBlock, Put/Get/DeleteBucketOwnershipControls).

"Public" is read as AWS's user guide defines it ("The meaning of public"): an ACL is
public when it grants anything to AllUsers or AuthenticatedUsers; a bucket policy is
public when one of its Allow statements names a wildcard principal and no condition
pins the request to fixed values of the keys AWS lists (aws:SourceIp with a CIDR,
aws:SourceArn, aws:SourceVpc, aws:SourceVpce, aws:SourceAccount, aws:SourceOwner,
aws:userid...). Only the bucket level is here: the account-level settings of s3control
(PutPublicAccessBlock on an account) are not implemented.

A bucket with no ownership controls keeps kobako's historical behaviour (ACLs work,
objects belong to the bucket owner); the three explicit settings behave as on AWS.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.s3 import configs, errors
from kobako.s3.identity import canonical_user_id
from kobako.s3.store import S3Store
from kobako.server.service import Handler, RequestContext

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
PUBLIC_GROUPS = (ALL_USERS, AUTHENTICATED_USERS)

SETTINGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
ENFORCED = "BucketOwnerEnforced"
PREFERRED = "BucketOwnerPreferred"
WRITER = "ObjectWriter"
OWNERSHIPS = (ENFORCED, PREFERRED, WRITER)
# The canned ACLs that a bucket with ACLs disabled still accepts: both leave the bucket
# owner in full control, which is what BucketOwnerEnforced means anyway.
OWNER_ONLY_CANNED = ("private", "bucket-owner-full-control")

# Condition keys whose fixed values keep a wildcard-principal statement non-public.
_PINNING_KEYS = {
    "aws:sourcearn", "aws:sourcevpc", "aws:sourcevpce", "aws:sourceowner",
    "aws:sourceaccount", "aws:userid", "aws:principalaccount", "aws:principalarn",
    "aws:principalorgid", "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "s3:dataaccesspointarn", "s3:dataaccesspointaccount",
}
_PINNING_OPERATORS = {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals",
                      "ArnLike"}
# An aws:SourceIp range wider than this is treated as "anyone" (kobako's reading: /0 to /7
# of IPv4 or /0 to /31 of IPv6 cover a large part of the internet).
_NARROWEST_PUBLIC = {4: 8, 6: 32}


def block_settings(store: S3Store, bucket: str) -> dict[str, bool]:
    """The bucket's Block Public Access settings; {} when it has none."""
    value = store.get_config(bucket, "public_access_block")
    return dict(value) if value else {}


def object_ownership(store: S3Store, bucket: str) -> str | None:
    """BucketOwnerEnforced, BucketOwnerPreferred, ObjectWriter, or None (not set)."""
    value = store.get_config(bucket, "ownership")
    return str(value) if value else None


def acls_disabled(store: S3Store, bucket: str) -> bool:
    return object_ownership(store, bucket) == ENFORCED


def is_public_grant(grant: dict[str, Any]) -> bool:
    return (grant.get("Grantee") or {}).get("URI") in PUBLIC_GROUPS


def acl_is_public(grants: list[dict[str, Any]]) -> bool:
    return any(is_public_grant(g) for g in grants)


def owner_only(grants: list[dict[str, Any]], account_id: str) -> bool:
    """True when the ACL gives nothing to anyone but the bucket owner's full control."""
    me = canonical_user_id(account_id)
    return all(g.get("Permission") == "FULL_CONTROL" and (g.get("Grantee") or {}).get("ID") == me
               for g in grants)


def acl_not_supported() -> AwsError:
    return AwsError("AccessControlListNotSupported", "The bucket does not allow ACLs", 400)


def invalid_acl_with_ownership() -> AwsError:
    return AwsError("InvalidBucketAclWithObjectOwnership",
                    "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced "
                    "setting", 400)


def check_acl_write(store: S3Store, bucket: str, owner_account: str, canned: str | None,
                    grants: list[dict[str, Any]]) -> None:
    """Refuse an ACL a request sets: AccessControlListNotSupported where ACLs are
    disabled (BucketOwnerEnforced), AccessDenied for a public ACL under BlockPublicAcls."""
    if acls_disabled(store, bucket) and not (
            canned in OWNER_ONLY_CANNED if canned else owner_only(grants, owner_account)):
        raise acl_not_supported()
    if block_settings(store, bucket).get("BlockPublicAcls") and acl_is_public(grants):
        raise errors.access_denied()


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wild_principal(spec: Any) -> bool:
    if spec == "*":
        return True
    if not isinstance(spec, dict):
        return True  # a malformed principal is not a fixed one
    return any("*" in str(entry) for values in spec.values() for entry in _as_list(values))


def _narrow(cidr: Any) -> bool:
    try:
        network = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return False
    return network.prefixlen >= _NARROWEST_PUBLIC[network.version]


def _pinned(conditions: dict[str, Any]) -> bool:
    """Does some condition restrict the statement to fixed sources or principals?"""
    for operator, pairs in conditions.items():
        if not isinstance(pairs, dict) or operator.endswith("IfExists"):
            continue  # ...IfExists lets requests without the key through: no pin
        for key, wanted in pairs.items():
            values = _as_list(wanted)
            if not values:
                continue
            name = key.lower()
            if name == "aws:sourceip" and operator == "IpAddress" \
                    and all(_narrow(v) for v in values):
                return True
            if name in _PINNING_KEYS and operator in _PINNING_OPERATORS and all(
                    "*" not in str(v) and "?" not in str(v) for v in values):
                return True
    return False


def policy_is_public(document: dict[str, Any] | None) -> bool:
    """AWS's test: some Allow statement reaches a wildcard principal, unpinned."""
    if not document:
        return False
    for statement in _as_list(document.get("Statement", [])):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        if "NotPrincipal" in statement:
            return True  # "everyone but ..." is public
        if _wild_principal(statement.get("Principal")) \
                and not _pinned(statement.get("Condition") or {}):
            return True
    return False


def public_policy_blocked(ctx: RequestContext, bucket: str) -> AwsError:
    who = f"arn:aws:iam::{ctx.account_id}:user/{ctx.credential.display_name}"
    return AwsError("AccessDenied", f"User: {who} is not authorized to perform: "
                    f's3:PutBucketPolicy on resource: "arn:aws:s3:::{bucket}" because public '
                    "policies are blocked by the BlockPublicPolicy block public access setting.",
                    403)


def validated_ownership(value: Any) -> str:
    if value not in OWNERSHIPS:
        raise errors.malformed_xml()
    return str(value)


def build_handlers(s3: Any) -> dict[str, Handler]:
    store: S3Store = s3.store

    async def put_public_access_block(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        given = params.get("PublicAccessBlockConfiguration")
        if not isinstance(given, dict):
            raise errors.malformed_xml()
        store.set_config(bucket.name, "public_access_block",
                         {name: bool(given.get(name, False)) for name in SETTINGS})
        return {}

    async def get_public_access_block(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        settings = block_settings(store, bucket.name)
        if not settings:
            raise errors.no_bucket_config("NoSuchPublicAccessBlockConfiguration",
                                          "The public access block configuration was not found",
                                          bucket.name)
        return {"PublicAccessBlockConfiguration": settings}

    async def put_ownership_controls(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        rules = (params.get("OwnershipControls") or {}).get("Rules") or []
        if len(rules) != 1:
            raise errors.malformed_xml()
        ownership = validated_ownership(rules[0].get("ObjectOwnership"))
        if ownership == ENFORCED:
            grants = store.get_config(bucket.name, "acl") or []
            if not owner_only(grants, bucket.account_id):
                raise invalid_acl_with_ownership()
        store.set_config(bucket.name, "ownership", ownership)
        return {}

    async def get_ownership_controls(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        ownership = object_ownership(store, bucket.name)
        if ownership is None:
            raise errors.no_bucket_config("OwnershipControlsNotFoundError",
                                          "The bucket ownership controls were not found",
                                          bucket.name)
        return {"OwnershipControls": {"Rules": [{"ObjectOwnership": ownership}]}}

    return {
        "PutPublicAccessBlock": put_public_access_block,
        "GetPublicAccessBlock": get_public_access_block,
        "DeletePublicAccessBlock": configs.deleter(s3, "public_access_block"),
        "PutBucketOwnershipControls": put_ownership_controls,
        "GetBucketOwnershipControls": get_ownership_controls,
        "DeleteBucketOwnershipControls": configs.deleter(s3, "ownership"),
    }
