"""Who may do what: bucket policies, ACLs and ownership, checked on every S3 request.

The decision for a request: an explicit Deny in the bucket policy refuses it; the
bucket owner's account is allowed; otherwise a policy Allow or an ACL grant must
allow it. Without a policy or grants, only the owner gets in: secure by default.
Block Public Access and Object Ownership (publicaccess.py) narrow this: public ACL
grants ignored, a public policy's Allow kept to the owner's account, ACLs disabled, and
an object another account owns readable only through its own ACL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, unquote

from kobako.protocol.errors import AwsError
from kobako.s3 import configs, errors, publicaccess
from kobako.s3.identity import canonical_user_id
from kobako.s3.policy import ALLOW, DENY, NEUTRAL, Principal, evaluate, parse_policy
from kobako.s3.publicaccess import ALL_USERS, AUTHENTICATED_USERS
from kobako.s3.store import Bucket, ObjectRecord, S3Store
from kobako.server.service import Handler, RequestContext

# The IAM action of each operation, where it is not simply "s3:" + its name.
ACTIONS = {
    "HeadObject": "s3:GetObject",
    "HeadBucket": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "CopyObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "ListParts": "s3:ListMultipartUploadParts",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "DeleteObjects": "s3:DeleteObject",
    "PutBucketCors": "s3:PutBucketCORS",
    "GetBucketCors": "s3:GetBucketCORS",
    "DeleteBucketCors": "s3:PutBucketCORS",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeleteBucketOwnershipControls": "s3:PutBucketOwnershipControls",
}
# Which ACL permission, on the bucket or on the object, lets a non-owner do an action.
BUCKET_PERMISSION = {
    "s3:ListBucket": "READ", "s3:ListBucketVersions": "READ",
    "s3:ListBucketMultipartUploads": "READ", "s3:PutObject": "WRITE",
    "s3:DeleteObject": "WRITE", "s3:DeleteObjectVersion": "WRITE",
    "s3:AbortMultipartUpload": "WRITE", "s3:ListMultipartUploadParts": "WRITE",
    "s3:GetBucketAcl": "READ_ACP", "s3:PutBucketAcl": "WRITE_ACP",
}
OBJECT_PERMISSION = {
    "s3:GetObject": "READ", "s3:GetObjectVersion": "READ",
    "s3:GetObjectAcl": "READ_ACP", "s3:PutObjectAcl": "WRITE_ACP",
}
CANNED = {
    "private": [],
    "public-read": [(ALL_USERS, "READ")],
    "public-read-write": [(ALL_USERS, "READ"), (ALL_USERS, "WRITE")],
    "authenticated-read": [(AUTHENTICATED_USERS, "READ")],
    "aws-exec-read": [],
    "bucket-owner-read": [],
    "bucket-owner-full-control": [],
    "log-delivery-write": [],
}


def action_of(ctx: RequestContext) -> str:
    name = ctx.operation
    if ctx.params.get("VersionId") and name in ("GetObject", "HeadObject"):
        return "s3:GetObjectVersion"
    if ctx.params.get("VersionId") and name == "DeleteObject":
        return "s3:DeleteObjectVersion"
    return ACTIONS.get(name, "s3:" + name)


def canned_grants(acl: str | None, owner_account: str,
                  bucket_account: str | None = None) -> list[dict[str, Any]]:
    """The grant list of a canned ACL (x-amz-acl); `bucket_account` is the bucket owner
    where an object belongs to another account (bucket-owner-read/-full-control)."""
    if acl is None:
        acl = "private"
    if acl not in CANNED:
        raise errors.invalid_argument("Invalid canned ACL", "x-amz-acl", acl)
    grants = [_user_grant(owner_account, "FULL_CONTROL")]
    grants += [{"Grantee": {"Type": "Group", "URI": uri}, "Permission": permission}
               for uri, permission in CANNED[acl]]
    if bucket_account and bucket_account != owner_account:
        if acl == "bucket-owner-full-control":
            grants.append(_user_grant(bucket_account, "FULL_CONTROL"))
        elif acl == "bucket-owner-read":
            grants.append(_user_grant(bucket_account, "READ"))
    return grants


def _user_grant(account_id: str, permission: str) -> dict[str, Any]:
    return {"Grantee": {"Type": "CanonicalUser", "ID": canonical_user_id(account_id)},
            "Permission": permission}


def _granted(grants: list[dict[str, Any]], ctx: RequestContext, permission: str,
             ignore_public: bool = False) -> bool:
    me = canonical_user_id(ctx.account_id) if not ctx.anonymous else None
    for grant in grants:
        if grant.get("Permission") not in (permission, "FULL_CONTROL"):
            continue
        grantee = grant.get("Grantee", {})
        uri, grantee_id = grantee.get("URI"), grantee.get("ID")
        if ignore_public and uri in (ALL_USERS, AUTHENTICATED_USERS):
            continue  # IgnorePublicAcls
        if uri == ALL_USERS or (uri == AUTHENTICATED_USERS and not ctx.anonymous):
            return True
        if me is not None and grantee_id == me:
            return True
    return False


# Request headers S3 offers as policy condition keys ("s3:<header>").
HEADER_KEYS = (
    "x-amz-acl", "x-amz-copy-source", "x-amz-metadata-directive", "x-amz-grant-read",
    "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
    "x-amz-grant-full-control", "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-storage-class",
    "x-amz-website-redirect-location", "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold",
)


def _context_keys(ctx: RequestContext, tags: list[Any] | None) -> dict[str, str]:
    keys = {"aws:SecureTransport": "false", "aws:SourceIp": ctx.request.client_ip}
    if not ctx.anonymous:
        keys.update({"aws:PrincipalAccount": ctx.account_id,
                     "aws:username": ctx.credential.display_name,
                     "aws:userid": ctx.credential.access_key_id})
    for param, key in (("Prefix", "s3:prefix"), ("Delimiter", "s3:delimiter"),
                       ("MaxKeys", "s3:max-keys"), ("VersionId", "s3:VersionId")):
        if ctx.params.get(param) is not None:
            keys[key] = str(ctx.params[param])
    headers: Mapping[str, str] = ctx.request.headers
    for name in HEADER_KEYS:
        value = headers.get(name)
        if value is not None:
            keys["s3:" + name] = value
    if "s3:x-amz-copy-source" in keys:  # AWS matches the decoded "bucket/key" form
        keys["s3:x-amz-copy-source"] = unquote(keys["s3:x-amz-copy-source"]).lstrip("/")
    for tag_key, tag_value in tags or []:
        keys[f"s3:ExistingObjectTag/{tag_key}"] = tag_value
    for tag_key, tag_value in parse_qsl(headers.get("x-amz-tagging", ""),
                                        keep_blank_values=True):
        keys[f"s3:RequestObjectTag/{tag_key}"] = tag_value
    return keys


def _lists_bucket(store: S3Store, ctx: RequestContext, bucket: Bucket, who: Principal,
                  keys: dict[str, str]) -> bool:
    """Whether the caller may list the bucket: S3 then says 404, not 403, for a missing key."""
    decision = evaluate(store.get_config(bucket.name, "policy"), who, "s3:ListBucket",
                        f"arn:aws:s3:::{bucket.name}", keys)
    if decision != NEUTRAL:
        return decision == ALLOW
    return _granted(store.get_config(bucket.name, "acl") or [], ctx, "READ")


def _target(store: S3Store, ctx: RequestContext, bucket: str, key: str) -> ObjectRecord | None:
    """The object (version) a request names, for object ACLs and ExistingObjectTag keys."""
    version = ctx.params.get("VersionId")
    if version:
        return store.get_version(bucket, key, version)
    return store.get_object(bucket, key)


def authorize(store: S3Store, ctx: RequestContext, bucket: Bucket,
              record: ObjectRecord | None = None) -> None:
    """Raise AccessDenied unless policy, ownership or ACL lets this request through."""
    action = action_of(ctx)
    key = ctx.params.get("Key")
    policy = store.get_config(bucket.name, "policy")
    is_owner = bool(ctx.account_id) and ctx.account_id == bucket.account_id
    if is_owner and not policy and not (key and _writer_owns_objects(
            action, publicaccess.object_ownership(store, bucket.name))):
        # The hot path (the owner's own requests, no policy), answered as the full
        # check below would: with no policy there is no Deny, Block Public Access only
        # narrows what others get, and the one thing that keeps out the bucket owner,
        # an object another account owns, is ruled out.
        return
    resource = f"arn:aws:s3:::{bucket.name}" + (f"/{key}" if key else "")
    who = Principal(ctx.account_id, ctx.credential.display_name)
    if record is None and key and policy and "ExistingObjectTag" in json.dumps(policy):
        record = _target(store, ctx, bucket.name, key)
    keys = _context_keys(ctx, record.headers.get("Tags") if record is not None else None)
    decision = evaluate(policy, who, action, resource, keys)
    if decision == DENY:
        raise errors.access_denied()
    # Block Public Access is read only where it can change the answer (not on the
    # owner's own requests, the hot path).
    settings: dict[str, bool] = {} if is_owner else \
        publicaccess.block_settings(store, bucket.name)
    if decision == ALLOW and not is_owner and settings.get("RestrictPublicBuckets") \
            and publicaccess.policy_is_public(policy):
        decision = NEUTRAL  # a public policy serves only the owner's account
    ownership = publicaccess.object_ownership(store, bucket.name)
    if key and _writer_owns_objects(action, ownership):
        # An object another account wrote (and owns): neither the bucket owner nor the
        # bucket policy's Allow reach it; its owner and its own ACL decide.
        if record is None:
            record = store.get_object(bucket.name, key)
        object_owner = owner_account(record, bucket.account_id) if record else None
        if record is not None and object_owner != bucket.account_id:
            if ctx.account_id and ctx.account_id == object_owner:
                return
            ignore = publicaccess.block_settings(store, bucket.name).get("IgnorePublicAcls")
            if _granted(record.headers.get("ACL", []), ctx,
                        OBJECT_PERMISSION.get(action, "FULL_CONTROL"), bool(ignore)):
                return
            raise errors.access_denied()
    if is_owner or decision == ALLOW:
        return
    if ownership == publicaccess.ENFORCED:
        raise errors.access_denied()  # ACLs are disabled: they grant nothing
    ignore_public = bool(settings.get("IgnorePublicAcls"))
    permission = BUCKET_PERMISSION.get(action)
    if permission and _granted(store.get_config(bucket.name, "acl") or [], ctx, permission,
                               ignore_public):
        return
    permission = OBJECT_PERMISSION.get(action)
    if permission and key:
        if record is None:
            record = _target(store, ctx, bucket.name, key)
        if record is not None and _granted(record.headers.get("ACL", []), ctx, permission,
                                           ignore_public):
            return
        if record is None and permission == "READ" and _lists_bucket(store, ctx, bucket, who,
                                                                      keys):
            return  # the handler answers NoSuchKey, as S3 does for whoever may list
    raise errors.access_denied()


def _writer_owns_objects(action: str, ownership: str | None) -> bool:
    """Whether the object an action acts on may belong to whoever wrote it (Object
    Ownership ObjectWriter or BucketOwnerPreferred), so that its owner decides."""
    return action not in BUCKET_PERMISSION and ownership in (
        publicaccess.WRITER, publicaccess.PREFERRED)


def owner_account(record: ObjectRecord, bucket_account: str) -> str:
    """Who owns an object: the account that wrote it where the bucket's Object Ownership
    left it to the writer (stored as headers["Owner"]), else the bucket owner."""
    owner = record.headers.get("Owner")
    return str(owner["AccountId"]) if owner else bucket_account


def object_acl(store: S3Store, ctx: RequestContext, bucket: Bucket,
               params: dict[str, Any]) -> dict[str, Any]:
    """The ownership and ACL headers an object write (PUT, copy, multipart, POST) stores.

    Checks the requested ACL against Object Ownership and Block Public Access, and
    decides who owns the new object: the bucket owner, or under ObjectWriter (and
    BucketOwnerPreferred without bucket-owner-full-control) the account that writes it.
    """
    ownership = publicaccess.object_ownership(store, bucket.name)
    canned = params.get("ACL")
    writer = ctx.account_id or bucket.account_id
    owner = bucket.account_id
    if ownership == publicaccess.WRITER or (
            ownership == publicaccess.PREFERRED and canned != "bucket-owner-full-control"):
        owner = writer
    out: dict[str, Any] = {}
    if owner != bucket.account_id:
        out["Owner"] = {"AccountId": owner, "DisplayName": ctx.credential.display_name}
    if not _names_acl(params):
        if owner != bucket.account_id:
            out["ACL"] = canned_grants(None, owner)
        return out
    grants = _grants_from(params, owner, bucket.account_id)
    publicaccess.check_acl_write(store, bucket.name, bucket.account_id, canned, grants)
    if ownership != publicaccess.ENFORCED:
        out["ACL"] = grants
    return out


def as_source_read(ctx: RequestContext, key: str, version_id: str | None) -> RequestContext:
    """The request as S3 authorizes its copy source: s3:GetObject(Version) on that object."""
    params: dict[str, Any] = {"Key": key}
    if version_id:
        params["VersionId"] = version_id
    return replace(ctx, operation="GetObject", params=params)


def _owner(account_id: str, name: str) -> dict[str, str]:
    return {"ID": canonical_user_id(account_id), "DisplayName": name}


# The x-amz-grant-* headers, by parameter name, and the permission each grants.
GRANT_HEADERS = {"GrantRead": "READ", "GrantWrite": "WRITE", "GrantReadACP": "READ_ACP",
                 "GrantWriteACP": "WRITE_ACP", "GrantFullControl": "FULL_CONTROL"}
_ACL_PARAMS = frozenset(["ACL", "AccessControlPolicy", *GRANT_HEADERS])
_GRANTEE_TYPES = {"id": ("CanonicalUser", "ID"), "uri": ("Group", "URI"),
                  "emailaddress": ("AmazonCustomerByEmail", "EmailAddress")}


def _names_acl(params: dict[str, Any]) -> bool:
    if _ACL_PARAMS.isdisjoint(params):
        return False  # most writes name no ACL: one set test instead of seven look-ups
    return bool(params.get("ACL") or params.get("AccessControlPolicy")
                or any(params.get(name) for name in GRANT_HEADERS))


def requested_grants(params: dict[str, Any], owner_account: str) -> list[dict[str, Any]] | None:
    """The ACL a request names (canned, x-amz-grant-* headers or XML), or None."""
    return _grants_from(params, owner_account) if _names_acl(params) else None


def _header_grants(params: dict[str, Any]) -> list[dict[str, Any]]:
    """x-amz-grant-read: id="...", uri="..." and friends, as a grant list."""
    grants = []
    for name, permission in GRANT_HEADERS.items():
        for item in str(params.get(name) or "").split(","):
            if not item.strip():
                continue
            kind, _, value = item.strip().partition("=")
            found = _GRANTEE_TYPES.get(kind.strip().lower())
            if found is None or not value.strip().strip('"'):
                raise errors.invalid_argument("Argument format not recognized",
                                              f"x-amz-{name.lower()}", item.strip())
            grants.append({"Grantee": {"Type": found[0], found[1]: value.strip().strip('"')},
                           "Permission": permission})
    return grants


def _grants_from(params: dict[str, Any], owner_account: str,
                 bucket_account: str | None = None,
                 users: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    policy = params.get("AccessControlPolicy")
    headers = _header_grants(params)
    if headers:
        if params.get("ACL"):
            raise AwsError("InvalidRequest", "Specifying both Canned ACLs and Header Grants "
                           "is not allowed", 400)
        return headers
    if params.get("ACL") or not policy:
        return canned_grants(params.get("ACL"), owner_account, bucket_account)
    grants = []
    for grant in policy.get("Grants") or []:
        grantee = grant.get("Grantee") or {}
        if grant.get("Permission") not in ("READ", "WRITE", "READ_ACP", "WRITE_ACP",
                                           "FULL_CONTROL"):
            raise AwsError("MalformedACLError", "The XML you provided was not well-formed "
                           "or did not validate against our published schema", 400)
        if grantee.get("Type") == "AmazonCustomerByEmail" or grantee.get("EmailAddress"):
            # kobako keeps no e-mail addresses, so none resolves to an account.
            raise AwsError("UnresolvableGrantByEmailAddress", "The e-mail address you "
                           "provided does not match any account on record.", 400,
                           fields={"EmailAddress": grantee.get("EmailAddress", "")})
        if grantee.get("Type") == "CanonicalUser" and users is not None \
                and grantee.get("ID") not in users:
            raise errors.invalid_argument("Invalid id", "CanonicalUser/ID",
                                          str(grantee.get("ID", "")))
        kept = {k: grantee[k] for k in ("Type", "ID", "URI") if grantee.get(k)}
        grants.append({"Grantee": kept, "Permission": grant["Permission"]})
    return grants


def _grant_view(grants: list[dict[str, Any]], users: Mapping[str, str]) -> list[dict[str, Any]]:
    """Grants as GetBucketAcl/GetObjectAcl show them: a canonical user also by name."""
    out = []
    for grant in grants:
        grantee = dict(grant["Grantee"])
        if grantee.get("ID") in users:
            grantee["DisplayName"] = users[grantee["ID"]]
        out.append({"Grantee": grantee, "Permission": grant["Permission"]})
    return out


def build_handlers(s3: Any) -> dict[str, Handler]:
    store: S3Store = s3.store
    users: dict[str, str] = s3.users

    async def put_bucket_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        policy = parse_policy(params.get("Policy") or "", bucket.name)
        if publicaccess.block_settings(store, bucket.name).get("BlockPublicPolicy") \
                and publicaccess.policy_is_public(policy):
            raise publicaccess.public_policy_blocked(ctx, bucket.name)
        store.set_config(bucket.name, "policy", policy)
        return {"__status": 204}

    async def get_bucket_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        policy = store.get_config(bucket.name, "policy")
        if policy is None:
            raise errors.no_bucket_config("NoSuchBucketPolicy",
                                          "The bucket policy does not exist", bucket.name)
        return {"Policy": json.dumps(policy)}

    async def put_bucket_acl(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        grants = _grants_from(params, bucket.account_id, users=users)
        publicaccess.check_acl_write(store, bucket.name, bucket.account_id, params.get("ACL"),
                                     grants)
        store.set_config(bucket.name, "acl", grants)
        return {}

    async def get_bucket_acl(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        grants = store.get_config(bucket.name, "acl")
        if grants is None or publicaccess.acls_disabled(store, bucket.name):
            grants = canned_grants(None, bucket.account_id)
        return {"Owner": _owner(bucket.account_id, bucket.owner_name),
                "Grants": _grant_view(grants, users)}

    def object_owner(record: ObjectRecord, bucket: Bucket) -> tuple[str, str]:
        """(account, display name) of an object's owner; the bucket owner where ACLs
        are disabled, since BucketOwnerEnforced makes it the owner of every object."""
        owner = record.headers.get("Owner")
        if not owner or publicaccess.acls_disabled(store, bucket.name):
            return bucket.account_id, bucket.owner_name
        return str(owner["AccountId"]), str(owner["DisplayName"])

    async def put_object_acl(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = s3.object(ctx, params["Bucket"], params["Key"], params.get("VersionId"))
        bucket = store.get_bucket(record.bucket)
        assert bucket is not None
        owner, _ = object_owner(record, bucket)
        grants = _grants_from(params, owner, bucket.account_id, users=users)
        publicaccess.check_acl_write(store, bucket.name, bucket.account_id, params.get("ACL"),
                                     grants)
        headers = dict(record.headers)
        headers["ACL"] = grants
        store.set_version_headers(record.bucket, record.key, record.version_id, headers)
        return {}

    async def get_object_acl(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = s3.object(ctx, params["Bucket"], params["Key"], params.get("VersionId"))
        bucket = store.get_bucket(record.bucket)
        assert bucket is not None
        owner, name = object_owner(record, bucket)
        grants = record.headers.get("ACL")
        if grants is None or publicaccess.acls_disabled(store, bucket.name):
            grants = canned_grants(None, owner)
        return {"Owner": _owner(owner, name), "Grants": _grant_view(grants, users)}

    return {
        "PutBucketPolicy": put_bucket_policy,
        "GetBucketPolicy": get_bucket_policy,
        "DeleteBucketPolicy": configs.deleter(s3, "policy"),
        "PutBucketAcl": put_bucket_acl,
        "GetBucketAcl": get_bucket_acl,
        "PutObjectAcl": put_object_acl,
        "GetObjectAcl": get_object_acl,
    }
