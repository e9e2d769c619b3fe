"""Regressions found by running ceph's s3-tests against kobako (bench/README.md).

Each test pins one AWS behaviour the suite caught kobako without, on a real server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from conftest import Server
from kobako.s3.identity import canonical_user_id

OWNER_ID = canonical_user_id("111111111111")
OTHER_ID = canonical_user_id("222222222222")


def client(server: Server, key: str | None, secret: str | None = None) -> Any:
    config = BotoConfig(signature_version=UNSIGNED) if key is None else None
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key or "x", aws_secret_access_key=secret or "x",
                        config=config)


def owner_of(server: Server) -> Any:
    return client(server, "AKIAOWNER", "owner-secret")


def other_of(server: Server) -> Any:
    return client(server, "AKIAOTHER", "other-secret")


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], str(response["Error"]["Code"])


def test_acl_grantees_are_named_and_checked(two_accounts: Server) -> None:
    s3 = owner_of(two_accounts)
    s3.create_bucket(Bucket="conf-acl")
    acl = s3.get_bucket_acl(Bucket="conf-acl")
    assert acl["Grants"] == [{"Grantee": {"Type": "CanonicalUser", "ID": OWNER_ID,
                                          "DisplayName": "owner"},
                              "Permission": "FULL_CONTROL"}]
    owner = acl["Owner"]
    # A grant to an account kobako knows reads back with its name.
    s3.put_bucket_acl(Bucket="conf-acl", AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": OTHER_ID}, "Permission": "READ"}]})
    grant = s3.get_bucket_acl(Bucket="conf-acl")["Grants"][0]
    assert grant["Grantee"]["DisplayName"] == "other"
    # An empty grant list stays empty rather than reading back as the default ACL.
    s3.put_bucket_acl(Bucket="conf-acl", AccessControlPolicy={"Owner": owner, "Grants": []})
    assert s3.get_bucket_acl(Bucket="conf-acl").get("Grants", []) == []
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket="conf-acl", AccessControlPolicy={"Owner": owner, "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": "_foo"}, "Permission": "READ"}]})
    assert error_of(exc) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket="conf-acl", AccessControlPolicy={"Owner": owner, "Grants": [
            {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "x@example.com"},
             "Permission": "READ"}]})
    assert error_of(exc) == (400, "UnresolvableGrantByEmailAddress")


def test_object_acl_by_version_and_not_copied(two_accounts: Server) -> None:
    s3 = owner_of(two_accounts)
    s3.create_bucket(Bucket="conf-acl-versions")
    s3.put_bucket_versioning(Bucket="conf-acl-versions",
                             VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="conf-acl-versions", Key="k", Body=b"1")["VersionId"]
    s3.put_object(Bucket="conf-acl-versions", Key="k", Body=b"2")
    s3.put_object_acl(Bucket="conf-acl-versions", Key="k", VersionId=first, ACL="public-read")
    old = s3.get_object_acl(Bucket="conf-acl-versions", Key="k", VersionId=first)["Grants"]
    assert len(old) == 2
    assert len(s3.get_object_acl(Bucket="conf-acl-versions", Key="k")["Grants"]) == 1
    # CopyObject gives the new object a fresh (private) ACL, as S3 does.
    s3.copy_object(Bucket="conf-acl-versions", Key="copy",
                   CopySource={"Bucket": "conf-acl-versions", "Key": "k", "VersionId": first})
    assert len(s3.get_object_acl(Bucket="conf-acl-versions", Key="copy")["Grants"]) == 1


def test_missing_key_is_404_only_for_who_may_list(two_accounts: Server) -> None:
    s3 = owner_of(two_accounts)
    anonymous = client(two_accounts, None)
    s3.create_bucket(Bucket="conf-listable", ACL="public-read")
    s3.create_bucket(Bucket="conf-unlistable")
    with pytest.raises(ClientError) as exc:
        anonymous.get_object(Bucket="conf-listable", Key="gone")
    assert error_of(exc) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as exc:
        anonymous.get_object(Bucket="conf-unlistable", Key="gone")
    assert error_of(exc) == (403, "AccessDenied")


def _policy(bucket: str, action: str, condition: dict[str, Any] | None = None,
            effect: str = "Allow", resource: str | None = None) -> str:
    statement: dict[str, Any] = {"Effect": effect, "Principal": {"AWS": "*"}, "Action": action,
                                 "Resource": resource or f"arn:aws:s3:::{bucket}/*"}
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def test_policy_condition_keys_from_tags_and_headers(two_accounts: Server) -> None:
    s3, other = owner_of(two_accounts), other_of(two_accounts)
    s3.create_bucket(Bucket="conf-tags")
    for key, value in (("public", "yes"), ("private", "no")):
        s3.put_object(Bucket="conf-tags", Key=key, Body=b"x",
                      Tagging=f"security={value}")
    s3.put_bucket_policy(Bucket="conf-tags", Policy=_policy(
        "conf-tags", "s3:GetObject", {"StringEquals": {"s3:ExistingObjectTag/security": "yes"}}))
    assert other.get_object(Bucket="conf-tags", Key="public")["Body"].read() == b"x"
    with pytest.raises(ClientError) as exc:
        other.get_object(Bucket="conf-tags", Key="private")
    assert error_of(exc) == (403, "AccessDenied")

    s3.create_bucket(Bucket="conf-acl-header")
    s3.put_bucket_policy(Bucket="conf-acl-header", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::conf-acl-header/*"},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::conf-acl-header/*",
             "Condition": {"StringLike": {"s3:x-amz-acl": "public*"}}}]}))
    other.put_object(Bucket="conf-acl-header", Key="quiet", Body=b"x")
    with pytest.raises(ClientError) as exc:
        other.put_object(Bucket="conf-acl-header", Key="loud", Body=b"x", ACL="public-read")
    assert error_of(exc) == (403, "AccessDenied")


def test_copy_source_is_authorized_as_a_read_of_the_source(two_accounts: Server) -> None:
    s3, other = owner_of(two_accounts), other_of(two_accounts)
    s3.create_bucket(Bucket="conf-copy-src")
    s3.put_object(Bucket="conf-copy-src", Key="public/a", Body=b"a")
    s3.put_object(Bucket="conf-copy-src", Key="private/b", Body=b"b")
    s3.put_bucket_policy(Bucket="conf-copy-src", Policy=_policy(
        "conf-copy-src", "s3:GetObject", resource="arn:aws:s3:::conf-copy-src/public/*"))
    other.create_bucket(Bucket="conf-copy-dst")
    other.copy_object(Bucket="conf-copy-dst", Key="a",
                      CopySource={"Bucket": "conf-copy-src", "Key": "public/a"})
    assert other.get_object(Bucket="conf-copy-dst", Key="a")["Body"].read() == b"a"
    with pytest.raises(ClientError) as exc:
        other.copy_object(Bucket="conf-copy-dst", Key="b",
                          CopySource={"Bucket": "conf-copy-src", "Key": "private/b"})
    assert error_of(exc) == (403, "AccessDenied")


def test_policy_resource_may_name_the_bucket_by_wildcard(two_accounts: Server) -> None:
    s3, other = owner_of(two_accounts), other_of(two_accounts)
    s3.create_bucket(Bucket="conf-wild")
    s3.put_object(Bucket="conf-wild", Key="k", Body=b"x")
    s3.put_bucket_policy(Bucket="conf-wild", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:ListBucket",
            "Resource": ["arn:aws:s3:::*", "arn:aws:s3:::*/*"]}]}))
    assert len(other.list_objects(Bucket="conf-wild")["Contents"]) == 1
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket="conf-wild", Policy=_policy(
            "conf-wild", "s3:GetObject", resource="arn:aws:s3:::another-bucket/*"))
    assert error_of(exc) == (400, "MalformedPolicy")


def _post(server: Server, bucket: str, document: dict[str, Any], extra: dict[str, str],
          sign: bool = True) -> requests.Response:
    policy = base64.b64encode(json.dumps(document).encode())
    fields: dict[str, Any] = {"key": "up.txt", "AWSAccessKeyId": "AKIAOWNER",
                              "policy": policy}
    if sign:
        fields["signature"] = base64.b64encode(
            hmac.new(b"owner-secret", policy, hashlib.sha1).digest())
    fields.update(extra)
    return requests.post(f"{server.url}/{bucket}", files={**fields, "file": "body"},
                         timeout=30)


def test_post_policy_document_errors(two_accounts: Server) -> None:
    owner_of(two_accounts).create_bucket(Bucket="conf-post")
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    good = {"expiration": later, "conditions": [{"bucket": "conf-post"},
                                                ["starts-with", "$key", "up"]]}
    response = _post(two_accounts, "conf-post", good, {}, sign=False)
    assert response.status_code == 400 and b"InvalidArgument" in response.content
    assert b"Signature" in response.content
    for document in (
        {"expiration": str(datetime.now(UTC) + timedelta(hours=1)),
         "conditions": good["conditions"]},                        # not ISO 8601 with 'Z'
        {"expiration": later},                                     # no conditions
        {"expiration": later, "CONDITIONS": good["conditions"]},   # names are case-sensitive
        {"expiration": later, "conditions": [{}]},                 # an empty simple condition
    ):
        response = _post(two_accounts, "conf-post", document, {})
        assert response.status_code == 400, document
        assert b"InvalidPolicyDocument" in response.content
    assert _post(two_accounts, "conf-post", good, {}).status_code == 204


def test_post_tagging_field_tags_the_object(two_accounts: Server) -> None:
    s3 = owner_of(two_accounts)
    s3.create_bucket(Bucket="conf-post-tags", ACL="public-read-write")
    tagging = ("<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag>"
               "<Tag><Key>b</Key><Value></Value></Tag></TagSet></Tagging>")
    response = requests.post(f"{two_accounts.url}/conf-post-tags", files={
        "key": "tagged", "tagging": tagging, "file": "body"}, timeout=30)
    assert response.status_code == 204, response.content
    tags = s3.get_object_tagging(Bucket="conf-post-tags", Key="tagged")["TagSet"]
    assert tags == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": ""}]


def test_multipart_completes_twice_and_keeps_its_initiator(two_accounts: Server) -> None:
    s3, other = owner_of(two_accounts), other_of(two_accounts)
    s3.create_bucket(Bucket="conf-mpu", ACL="public-read-write")
    upload = other.create_multipart_upload(Bucket="conf-mpu", Key="k")["UploadId"]
    listed = s3.list_multipart_uploads(Bucket="conf-mpu")["Uploads"][0]
    assert listed["Initiator"]["ID"] == OTHER_ID == listed["Owner"]["ID"]
    assert listed["Initiator"]["DisplayName"] == "other"
    part = other.upload_part(Bucket="conf-mpu", Key="k", UploadId=upload, PartNumber=1,
                             Body=b"x")
    parts = {"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]}
    first = other.complete_multipart_upload(Bucket="conf-mpu", Key="k", UploadId=upload,
                                            MultipartUpload=parts)
    again = other.complete_multipart_upload(Bucket="conf-mpu", Key="k", UploadId=upload,
                                            MultipartUpload=parts)
    assert again["ETag"] == first["ETag"]
    with pytest.raises(ClientError) as exc:
        other.complete_multipart_upload(Bucket="conf-mpu", Key="k", UploadId="nope",
                                        MultipartUpload=parts)
    assert error_of(exc) == (404, "NoSuchUpload")


def test_upload_part_copy_range_past_the_source(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"12345")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src"},
                            CopySourceRange="bytes=0-21")
    assert error_of(exc) == (400, "InvalidArgument")
    assert "size: 5" in exc.value.response["Error"]["Message"]


def test_suspended_bucket_writes_answer_without_version_id(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert "VersionId" not in s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"x")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="m", UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    assert "VersionId" not in done
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == "null"


def test_lifecycle_transition_date_must_be_midnight(s3: Any, bucket: str) -> None:
    rule = {"ID": "r", "Prefix": "p/", "Status": "Enabled",
            "Transitions": [{"Date": datetime(2030, 1, 1, 12, tzinfo=UTC),
                             "StorageClass": "GLACIER"}]}
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                              LifecycleConfiguration={"Rules": [rule]})
    assert error_of(exc) == (400, "InvalidArgument")


def test_governance_mode_change_needs_bypass(s3: Any, server: Server) -> None:
    name = "conf-lock-mode"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    until = datetime.now(UTC) + timedelta(seconds=30)
    s3.put_object(Bucket=name, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                  ObjectLockRetainUntilDate=until)
    stricter = {"Mode": "COMPLIANCE", "RetainUntilDate": until}
    with pytest.raises(ClientError) as exc:
        s3.put_object_retention(Bucket=name, Key="k", Retention=stricter)
    assert error_of(exc) == (403, "AccessDenied")
    s3.put_object_retention(Bucket=name, Key="k", Retention=stricter,
                            BypassGovernanceRetention=True)
    assert s3.get_object_retention(Bucket=name, Key="k")["Retention"]["Mode"] == "COMPLIANCE"


def test_refused_put_with_expect_continue_gets_the_error_not_100(s3: Any, bucket: str,
                                                                 server: Server) -> None:
    host, port = server.url.split("//")[1].split(":")
    request = (f"PUT /{bucket}/obj HTTP/1.1\r\nHost: {host}\r\nContent-Length: 123\r\n"
               "Expect: 100-continue\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        status = sock.recv(1024).split(b" ")[1]
    assert status == b"403"
