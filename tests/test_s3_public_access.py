"""Block Public Access and Object Ownership on a bucket, enforced on real requests from
two accounts and anonymous callers."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from conftest import Server

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def client(server: Server, key: str | None, secret: str | None = None) -> Any:
    config = BotoConfig(signature_version=UNSIGNED, retries={"max_attempts": 1}) \
        if key is None else BotoConfig(retries={"max_attempts": 1})
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key or "x", aws_secret_access_key=secret or "x",
                        config=config)


@pytest.fixture
def owner(two_accounts: Server) -> Any:
    return client(two_accounts, "AKIAOWNER", "owner-secret")


@pytest.fixture
def other(two_accounts: Server) -> Any:
    return client(two_accounts, "AKIAOTHER", "other-secret")


@pytest.fixture
def anonymous(two_accounts: Server) -> Any:
    return client(two_accounts, None)


def error_of(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as exc:
        call(*args, **kwargs)
    return dict(exc.value.response["Error"]) | {
        "Status": exc.value.response["ResponseMetadata"]["HTTPStatusCode"]}


def code_of(call: Any, *args: Any, **kwargs: Any) -> str:
    return str(error_of(call, *args, **kwargs)["Code"])


def block(s3: Any, bucket: str, **settings: bool) -> None:
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=settings)


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def read(bucket: str) -> dict[str, Any]:
    """Anyone may GetObject in `bucket`: a public policy statement."""
    return {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*"}


def canonical_id(s3: Any) -> str:
    return str(s3.list_buckets()["Owner"]["ID"])


def test_public_access_block_round_trip(owner: Any, other: Any) -> None:
    owner.create_bucket(Bucket="pab-config")
    error = error_of(owner.get_public_access_block, Bucket="pab-config")
    assert error["Code"] == "NoSuchPublicAccessBlockConfiguration" and error["Status"] == 404
    block(owner, "pab-config", BlockPublicAcls=True, RestrictPublicBuckets=True)
    assert owner.get_public_access_block(Bucket="pab-config")[
        "PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": True}
    assert code_of(other.get_public_access_block, Bucket="pab-config") == "AccessDenied"
    assert code_of(block, other, "pab-config", BlockPublicAcls=False) == "AccessDenied"
    owner.delete_public_access_block(Bucket="pab-config")
    assert code_of(owner.get_public_access_block, Bucket="pab-config") == \
        "NoSuchPublicAccessBlockConfiguration"


def test_block_public_acls(two_accounts: Server, owner: Any) -> None:
    bucket = "pab-acls"
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="before.txt", Body=b"old", ACL="public-read")
    block(owner, bucket, BlockPublicAcls=True)
    for acl in ("public-read", "public-read-write", "authenticated-read"):
        assert code_of(owner.put_object, Bucket=bucket, Key="k", Body=b"x", ACL=acl) == \
            "AccessDenied"
    assert code_of(owner.put_object, Bucket=bucket, Key="k", Body=b"x",
                   GrantRead=f'uri="{ALL_USERS}"') == "AccessDenied"
    assert code_of(owner.put_object_acl, Bucket=bucket, Key="before.txt",
                   ACL="public-read") == "AccessDenied"
    assert code_of(owner.put_bucket_acl, Bucket=bucket, ACL="public-read") == "AccessDenied"
    assert code_of(owner.put_bucket_acl, Bucket=bucket, AccessControlPolicy={
        "Owner": {"ID": canonical_id(owner)},
        "Grants": [{"Grantee": {"Type": "Group", "URI": AUTHENTICATED_USERS},
                    "Permission": "READ"}]}) == "AccessDenied"
    assert code_of(owner.copy_object, Bucket=bucket, Key="copy", ACL="public-read",
                   CopySource={"Bucket": bucket, "Key": "before.txt"}) == "AccessDenied"
    assert code_of(owner.create_multipart_upload, Bucket=bucket, Key="mp",
                   ACL="public-read") == "AccessDenied"
    post = owner.generate_presigned_post(bucket, "form.txt", Fields={"acl": "public-read"},
                                         Conditions=[{"acl": "public-read"}])
    refused = requests.post(post["url"], data=post["fields"], files={"file": ("f", b"x")},
                            timeout=10)
    assert refused.status_code == 403 and b"AccessDenied" in refused.content
    assert [o["Key"] for o in owner.list_objects_v2(Bucket=bucket)["Contents"]] == [
        "before.txt"]
    # Private ACLs still go through; an ACL set before the block still applies.
    owner.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="private")
    owner.put_bucket_acl(Bucket=bucket, ACL="private")
    assert requests.get(f"{two_accounts.url}/{bucket}/before.txt", timeout=10).content == b"old"


def test_ignore_public_acls(two_accounts: Server, owner: Any, other: Any,
                            anonymous: Any) -> None:
    bucket = "pab-ignore"
    owner.create_bucket(Bucket=bucket, ACL="public-read")
    owner.put_object(Bucket=bucket, Key="public.txt", Body=b"p", ACL="public-read")
    owner.put_object(Bucket=bucket, Key="authenticated.txt", Body=b"a",
                     ACL="authenticated-read")
    owner.put_object(Bucket=bucket, Key="granted.txt", Body=b"g",
                     GrantRead=f'id="{canonical_id(other)}"')
    assert anonymous.get_object(Bucket=bucket, Key="public.txt")["Body"].read() == b"p"
    assert anonymous.list_objects_v2(Bucket=bucket)["KeyCount"] == 3
    assert other.get_object(Bucket=bucket, Key="authenticated.txt")["Body"].read() == b"a"
    block(owner, bucket, IgnorePublicAcls=True)
    assert code_of(anonymous.get_object, Bucket=bucket, Key="public.txt") == "AccessDenied"
    assert code_of(anonymous.list_objects_v2, Bucket=bucket) == "AccessDenied"
    assert code_of(other.get_object, Bucket=bucket, Key="authenticated.txt") == "AccessDenied"
    # A grant to one named account is not public: it still counts.
    assert other.get_object(Bucket=bucket, Key="granted.txt")["Body"].read() == b"g"
    # The ACLs are ignored, not changed: lifting the block makes them count again.
    grants = owner.get_object_acl(Bucket=bucket, Key="public.txt")["Grants"]
    assert {"Type": "Group", "URI": ALL_USERS} in [g["Grantee"] for g in grants]
    owner.delete_public_access_block(Bucket=bucket)
    assert requests.get(f"{two_accounts.url}/{bucket}/public.txt", timeout=10).content == b"p"


def test_block_public_policy(owner: Any, anonymous: Any) -> None:
    bucket = "pab-policy"
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="k", Body=b"v")
    owner.put_bucket_policy(Bucket=bucket, Policy=policy(read(bucket)))
    block(owner, bucket, BlockPublicPolicy=True)
    # An existing public policy keeps working; a new one is refused.
    assert anonymous.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    error = error_of(owner.put_bucket_policy, Bucket=bucket, Policy=policy(read(bucket)))
    assert error["Code"] == "AccessDenied" and error["Status"] == 403
    assert "because public policies are blocked by the BlockPublicPolicy" in error["Message"]
    public = [
        read(bucket) | {"Principal": {"AWS": "*"}},
        read(bucket) | {"Principal": {"AWS": "arn:aws:iam::*:root"}},
        read(bucket) | {"Condition": {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}},
        read(bucket) | {"Condition": {"StringLike": {"aws:SourceArn": "arn:aws:sns:*"}}},
        read(bucket) | {"Condition": {"StringEqualsIfExists": {"aws:SourceAccount": "1"}}},
        read(bucket) | {"Condition": {"StringNotEquals": {"aws:SourceAccount": "1"}}},
        {"Effect": "Allow", "NotPrincipal": {"AWS": "111111111111"}, "Action": "s3:*",
         "Resource": f"arn:aws:s3:::{bucket}/*"},
    ]
    for statement in public:
        assert code_of(owner.put_bucket_policy, Bucket=bucket, Policy=policy(statement)) == \
            "AccessDenied", statement
    not_public = [
        read(bucket) | {"Principal": {"AWS": "arn:aws:iam::222222222222:root"}},
        read(bucket) | {"Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
        read(bucket) | {"Condition": {"StringEquals": {"aws:SourceAccount": "222222222222"}}},
        read(bucket) | {"Effect": "Deny"},
    ]
    for statement in not_public:
        owner.put_bucket_policy(Bucket=bucket, Policy=policy(statement))
    # The last policy accepted (a Deny for everyone) replaced the public one.
    assert code_of(anonymous.get_object, Bucket=bucket, Key="k") == "AccessDenied"


def test_restrict_public_buckets(owner: Any, other: Any, anonymous: Any) -> None:
    bucket = "pab-restrict"
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="k", Body=b"v")
    list_for_other = {"Effect": "Allow", "Principal": {"AWS": "222222222222"},
                      "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"}
    owner.put_bucket_policy(Bucket=bucket, Policy=policy(read(bucket), list_for_other))
    assert anonymous.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    assert other.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    block(owner, bucket, RestrictPublicBuckets=True)
    # The policy is public: only the owner's account may use it now, for any statement.
    assert code_of(anonymous.get_object, Bucket=bucket, Key="k") == "AccessDenied"
    assert code_of(other.get_object, Bucket=bucket, Key="k") == "AccessDenied"
    assert code_of(other.list_objects_v2, Bucket=bucket) == "AccessDenied"
    assert owner.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    # A policy that is not public is not restricted.
    owner.put_bucket_policy(Bucket=bucket, Policy=policy(list_for_other))
    assert other.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    owner.put_bucket_policy(Bucket=bucket, Policy=policy(read(bucket), list_for_other))
    owner.delete_public_access_block(Bucket=bucket)
    assert anonymous.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def ownership_of(s3: Any, bucket: str) -> str:
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    return str(rules[0]["ObjectOwnership"])


def set_ownership(s3: Any, bucket: str, value: str) -> None:
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": value}]})


def test_ownership_controls_round_trip(owner: Any) -> None:
    owner.create_bucket(Bucket="own-config")
    error = error_of(owner.get_bucket_ownership_controls, Bucket="own-config")
    assert error["Code"] == "OwnershipControlsNotFoundError" and error["Status"] == 404
    for value in ("ObjectWriter", "BucketOwnerPreferred", "BucketOwnerEnforced"):
        set_ownership(owner, "own-config", value)
        assert ownership_of(owner, "own-config") == value
    owner.delete_bucket_ownership_controls(Bucket="own-config")
    assert code_of(owner.get_bucket_ownership_controls, Bucket="own-config") == \
        "OwnershipControlsNotFoundError"
    owner.create_bucket(Bucket="own-created", ObjectOwnership="BucketOwnerEnforced")
    assert ownership_of(owner, "own-created") == "BucketOwnerEnforced"
    error = error_of(owner.create_bucket, Bucket="own-acl", ACL="public-read",
                     ObjectOwnership="BucketOwnerEnforced")
    assert error["Code"] == "InvalidBucketAclWithObjectOwnership" and error["Status"] == 400
    owner.create_bucket(Bucket="own-acl", ACL="private", ObjectOwnership="BucketOwnerEnforced")
    # ACLs cannot be disabled while the bucket ACL grants to others.
    owner.create_bucket(Bucket="own-public", ACL="public-read")
    assert code_of(set_ownership, owner, "own-public", "BucketOwnerEnforced") == \
        "InvalidBucketAclWithObjectOwnership"


def test_bucket_owner_enforced(two_accounts: Server, owner: Any, other: Any,
                               anonymous: Any) -> None:
    bucket = "own-enforced"
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="was-public.txt", Body=b"p", ACL="public-read")
    owner.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": "222222222222"}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*"}))
    assert anonymous.get_object(Bucket=bucket, Key="was-public.txt")["Body"].read() == b"p"
    set_ownership(owner, bucket, "BucketOwnerEnforced")
    # ACLs are disabled: the old public-read grant no longer counts...
    assert code_of(anonymous.get_object, Bucket=bucket, Key="was-public.txt") == "AccessDenied"
    owner_id = canonical_id(owner)
    acl = owner.get_object_acl(Bucket=bucket, Key="was-public.txt")
    assert acl["Grants"] == [{"Grantee": {"Type": "CanonicalUser", "ID": owner_id,
                                          "DisplayName": "owner"},
                              "Permission": "FULL_CONTROL"}]
    # ...and setting one is refused, except the ones that leave the owner in control.
    for call, kwargs in (
            (owner.put_object, {"Key": "k", "Body": b"x", "ACL": "public-read"}),
            (owner.put_object, {"Key": "k", "Body": b"x", "GrantRead": f'uri="{ALL_USERS}"'}),
            (owner.put_object_acl, {"Key": "was-public.txt", "ACL": "public-read"}),
            (owner.put_bucket_acl, {"ACL": "authenticated-read"}),
            (owner.create_multipart_upload, {"Key": "mp", "ACL": "public-read"})):
        error = error_of(call, Bucket=bucket, **kwargs)
        assert error["Code"] == "AccessControlListNotSupported", (call, error)
        assert error["Status"] == 400 and error["Message"] == "The bucket does not allow ACLs"
    owner.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="private")
    owner.put_bucket_acl(Bucket=bucket, ACL="private")
    owner.put_object_acl(Bucket=bucket, Key="k", ACL="bucket-owner-full-control")
    # Objects another account writes belong to the bucket owner.
    other.put_object(Bucket=bucket, Key="from-other", Body=b"o",
                     ACL="bucket-owner-full-control")
    other.put_object(Bucket=bucket, Key="from-other-plain", Body=b"o2")
    assert owner.get_object(Bucket=bucket, Key="from-other")["Body"].read() == b"o"
    assert owner.get_object(Bucket=bucket, Key="from-other-plain")["Body"].read() == b"o2"
    assert owner.get_object_acl(Bucket=bucket, Key="from-other")["Owner"]["ID"] == owner_id
    assert code_of(other.put_object, Bucket=bucket, Key="k2", Body=b"x",
                   ACL="public-read") == "AccessControlListNotSupported"


def test_object_writer_and_bucket_owner_preferred(owner: Any, other: Any) -> None:
    bucket = "own-writer"
    owner.create_bucket(Bucket=bucket, ObjectOwnership="ObjectWriter")
    owner.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": "222222222222"},
         "Action": ["s3:PutObject", "s3:GetObject"], "Resource": f"arn:aws:s3:::{bucket}/*"}))
    owner_id, other_id = canonical_id(owner), canonical_id(other)
    other.put_object(Bucket=bucket, Key="theirs", Body=b"t")
    other.put_object(Bucket=bucket, Key="shared", Body=b"s", ACL="bucket-owner-full-control")
    owner.put_object(Bucket=bucket, Key="mine", Body=b"m")
    # The writer owns what it wrote: the bucket owner reads it only where its ACL says so.
    acl = other.get_object_acl(Bucket=bucket, Key="theirs")
    assert acl["Owner"]["ID"] == other_id
    assert acl["Grants"] == [{"Grantee": {"Type": "CanonicalUser", "ID": other_id,
                                          "DisplayName": "other"},
                              "Permission": "FULL_CONTROL"}]
    assert other.get_object(Bucket=bucket, Key="theirs")["Body"].read() == b"t"
    assert code_of(owner.get_object, Bucket=bucket, Key="theirs") == "AccessDenied"
    assert code_of(owner.head_object, Bucket=bucket, Key="theirs") == "403"
    assert owner.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"s"
    shared = owner.get_object_acl(Bucket=bucket, Key="shared")
    assert shared["Owner"]["ID"] == other_id
    assert {"Type": "CanonicalUser", "ID": owner_id, "DisplayName": "owner"} in [
        g["Grantee"] for g in shared["Grants"]]
    # The bucket policy's Allow does not reach objects the bucket owner does not own, but
    # the owner still reads its own objects and may delete anyone's.
    assert other.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"m"
    owner.delete_object(Bucket=bucket, Key="theirs")

    set_ownership(owner, bucket, "BucketOwnerPreferred")
    other.put_object(Bucket=bucket, Key="preferred", Body=b"p", ACL="bucket-owner-full-control")
    other.put_object(Bucket=bucket, Key="kept", Body=b"k")
    assert owner.get_object_acl(Bucket=bucket, Key="preferred")["Owner"]["ID"] == owner_id
    assert owner.get_object(Bucket=bucket, Key="preferred")["Body"].read() == b"p"
    assert other.get_object_acl(Bucket=bucket, Key="kept")["Owner"]["ID"] == other_id
    assert code_of(owner.get_object, Bucket=bucket, Key="kept") == "AccessDenied"
    # BucketOwnerEnforced makes the bucket owner the owner of every object at once.
    set_ownership(owner, bucket, "BucketOwnerEnforced")
    assert owner.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"k"
    assert owner.get_object_acl(Bucket=bucket, Key="kept")["Owner"]["ID"] == owner_id
