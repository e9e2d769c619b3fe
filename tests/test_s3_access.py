"""Bucket policies, canned ACLs and anonymous access, enforced on real requests."""

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


def client(server: Server, key: str | None, secret: str | None = None) -> Any:
    config = BotoConfig(signature_version=UNSIGNED) if key is None else None
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key or "x", aws_secret_access_key=secret or "x",
                        config=config)


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_private_by_default(two_accounts: Server) -> None:
    owner = client(two_accounts, "AKIAOWNER", "owner-secret")
    other = client(two_accounts, "AKIAOTHER", "other-secret")
    anonymous = client(two_accounts, None)
    owner.create_bucket(Bucket="private-data")
    owner.put_object(Bucket="private-data", Key="k", Body=b"secret")
    for caller in (other, anonymous):
        with pytest.raises(ClientError) as exc:
            caller.get_object(Bucket="private-data", Key="k")
        assert code_of(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        anonymous.list_buckets()
    assert code_of(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        anonymous.create_bucket(Bucket="anon-bucket")
    assert code_of(exc) == "AccessDenied"


def test_public_read_object_acl(two_accounts: Server) -> None:
    owner = client(two_accounts, "AKIAOWNER", "owner-secret")
    owner.create_bucket(Bucket="acl-bucket")
    owner.put_object(Bucket="acl-bucket", Key="public.txt", Body=b"hello", ACL="public-read")
    owner.put_object(Bucket="acl-bucket", Key="private.txt", Body=b"no")
    response = requests.get(f"{two_accounts.url}/acl-bucket/public.txt", timeout=10)
    assert response.status_code == 200 and response.content == b"hello"
    assert requests.get(f"{two_accounts.url}/acl-bucket/private.txt",
                        timeout=10).status_code == 403
    # Reading is granted, listing and writing are not.
    assert requests.get(f"{two_accounts.url}/acl-bucket", timeout=10).status_code == 403
    assert requests.put(f"{two_accounts.url}/acl-bucket/new", data=b"x",
                        timeout=10).status_code == 403
    grants = owner.get_object_acl(Bucket="acl-bucket", Key="public.txt")["Grants"]
    assert {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"} in [
        g["Grantee"] for g in grants]
    owner.put_object_acl(Bucket="acl-bucket", Key="public.txt", ACL="private")
    assert requests.get(f"{two_accounts.url}/acl-bucket/public.txt",
                        timeout=10).status_code == 403
    owner.put_bucket_acl(Bucket="acl-bucket", ACL="public-read")
    anonymous = client(two_accounts, None)
    keys = [o["Key"] for o in anonymous.list_objects_v2(Bucket="acl-bucket")["Contents"]]
    assert keys == ["private.txt", "public.txt"]


def test_bucket_policy(two_accounts: Server) -> None:
    owner = client(two_accounts, "AKIAOWNER", "owner-secret")
    other = client(two_accounts, "AKIAOTHER", "other-secret")
    owner.create_bucket(Bucket="shared-data")
    owner.put_object(Bucket="shared-data", Key="reports/a.csv", Body=b"a")
    owner.put_object(Bucket="shared-data", Key="secret/b.csv", Body=b"b")
    with pytest.raises(ClientError) as exc:
        owner.get_bucket_policy(Bucket="shared-data")
    assert code_of(exc) == "NoSuchBucketPolicy"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
         "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::shared-data/reports/*"},
        {"Effect": "Allow", "Principal": {"AWS": "222222222222"}, "Action": "s3:ListBucket",
         "Resource": "arn:aws:s3:::shared-data",
         "Condition": {"StringLike": {"s3:prefix": "reports/*"}}},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::shared-data/reports/*",
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
         "Resource": "arn:aws:s3:::shared-data/*"},
    ]}
    owner.put_bucket_policy(Bucket="shared-data", Policy=json.dumps(policy))
    assert json.loads(owner.get_bucket_policy(Bucket="shared-data")["Policy"]) == policy
    assert other.get_object(Bucket="shared-data", Key="reports/a.csv")["Body"].read() == b"a"
    with pytest.raises(ClientError) as exc:
        other.get_object(Bucket="shared-data", Key="secret/b.csv")
    assert code_of(exc) == "AccessDenied"
    assert other.list_objects_v2(Bucket="shared-data", Prefix="reports/")["KeyCount"] == 1
    with pytest.raises(ClientError) as exc:
        other.list_objects_v2(Bucket="shared-data")
    assert code_of(exc) == "AccessDenied"
    assert requests.get(f"{two_accounts.url}/shared-data/reports/a.csv",
                        timeout=10).content == b"a"
    # An explicit Deny binds the owner too.
    with pytest.raises(ClientError) as exc:
        owner.delete_object(Bucket="shared-data", Key="reports/a.csv")
    assert code_of(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        owner.put_bucket_policy(Bucket="shared-data", Policy="{not json")
    assert code_of(exc) == "MalformedPolicy"
    with pytest.raises(ClientError) as exc:
        owner.put_bucket_policy(Bucket="shared-data", Policy=json.dumps({"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::other-bucket/*"}]}))
    assert code_of(exc) == "MalformedPolicy"
    owner.delete_bucket_policy(Bucket="shared-data")
    with pytest.raises(ClientError):
        other.get_object(Bucket="shared-data", Key="reports/a.csv")
    owner.delete_object(Bucket="shared-data", Key="reports/a.csv")


def test_owner_fast_path_still_denies(two_accounts: Server) -> None:
    """The owner's requests on a bucket without a policy skip the policy evaluation
    (kobako.s3.access.authorize); what can still keep the owner out must: a policy's
    Deny once there is one, and an object another account owns under ObjectWriter."""
    owner = client(two_accounts, "AKIAOWNER", "owner-secret")
    other = client(two_accounts, "AKIAOTHER", "other-secret")
    bucket = "fast-path"
    owner.create_bucket(Bucket=bucket, ObjectOwnership="ObjectWriter")
    owner.put_object(Bucket=bucket, Key="mine", Body=b"m")
    assert owner.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"m"
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [
        {"Effect": "Deny", "Principal": {"AWS": "111111111111"}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    with pytest.raises(ClientError) as exc:
        owner.get_object(Bucket=bucket, Key="mine")
    assert code_of(exc) == "AccessDenied"
    owner.delete_bucket_policy(Bucket=bucket)
    assert owner.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"m"
    # No policy at all: the other account may write through the bucket ACL, and then
    # owns what it wrote; the bucket owner does not get to read it.
    other_id = other.list_buckets()["Owner"]["ID"]
    owner.put_bucket_acl(Bucket=bucket, GrantWrite=f"id={other_id}",
                         GrantFullControl=f"id={owner.list_buckets()['Owner']['ID']}")
    other.put_object(Bucket=bucket, Key="theirs", Body=b"t")
    assert other.get_object(Bucket=bucket, Key="theirs")["Body"].read() == b"t"
    with pytest.raises(ClientError) as exc:
        owner.get_object(Bucket=bucket, Key="theirs")
    assert code_of(exc) == "AccessDenied"
    assert owner.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"m"


def test_x_forwarded_for_does_not_choose_the_source_ip(two_accounts: Server) -> None:
    """aws:SourceIp is the connection's address: a client cannot claim another one with
    X-Forwarded-For (no proxy stands in front of kobako)."""
    owner = client(two_accounts, "AKIAOWNER", "owner-secret")
    owner.create_bucket(Bucket="ip-gated")
    owner.put_object(Bucket="ip-gated", Key="k", Body=b"v")
    owner.put_bucket_policy(Bucket="ip-gated", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::ip-gated/*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}))
    url = f"{two_accounts.url}/ip-gated/k"
    assert requests.get(url, timeout=10).status_code == 403
    spoofed = requests.get(url, headers={"X-Forwarded-For": "10.1.2.3"}, timeout=10)
    assert spoofed.status_code == 403
