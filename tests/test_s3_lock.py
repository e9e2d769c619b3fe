"""S3 Object Lock through boto3: bucket configuration, retention, legal holds."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server

_counter = iter(range(1_000_000))


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def locked(s3: Any) -> str:
    name = f"lock-bucket-{os.getpid()}-{next(_counter)}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def soon(days: int = 1) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def test_create_with_lock_enables_versioning(s3: Any, locked: str, bucket: str) -> None:
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    config = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert config == {"ObjectLockEnabled": "Enabled"}
    with pytest.raises(ClientError) as exc:
        s3.get_object_lock_configuration(Bucket=bucket)
    assert code_of(exc) == "ObjectLockConfigurationNotFoundError"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(Bucket=locked, VersioningConfiguration={"Status": "Suspended"})
    assert code_of(exc) == "InvalidBucketState"
    # Lock on an existing bucket needs versioning first.
    with pytest.raises(ClientError) as exc:
        s3.put_object_lock_configuration(
            Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert code_of(exc) == "InvalidBucketState"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(
        Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"][
        "ObjectLockEnabled"] == "Enabled"


def test_lock_requests_on_a_bucket_without_lock(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=soon())
    assert code_of(exc) == "InvalidRequest"
    assert "missing Object Lock Configuration" in exc.value.response["Error"]["Message"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.get_object_retention(Bucket=bucket, Key="k")
    assert code_of(exc) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:
        s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "ON"})
    assert code_of(exc) == "InvalidRequest"


def test_default_retention_validation(s3: Any, locked: str) -> None:
    for rule, code in (
        ({"DefaultRetention": {"Mode": "GOVERNANCE"}}, "MalformedXML"),
        ({"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}, "MalformedXML"),
        ({"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 0}}, "InvalidArgument"),
        ({"DefaultRetention": {"Mode": "NOPE", "Days": 1}}, "MalformedXML"),
    ):
        with pytest.raises(ClientError) as exc:
            s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled", "Rule": rule})
        assert code_of(exc) == code, rule


def test_default_retention_applies_to_new_versions(s3: Any, locked: str) -> None:
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}})
    got = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert got["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 2}
    version = s3.put_object(Bucket=locked, Key="k", Body=b"x")["VersionId"]
    head = s3.head_object(Bucket=locked, Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert timedelta(days=1, hours=23) < until - datetime.now(UTC) <= timedelta(days=2)
    retention = s3.get_object_retention(Bucket=locked, Key="k", VersionId=version)["Retention"]
    assert retention["Mode"] == "GOVERNANCE" and retention["RetainUntilDate"] == until
    # A plain delete only adds a delete marker; the locked version stays.
    assert s3.delete_object(Bucket=locked, Key="k")["DeleteMarker"] is True
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="k", VersionId=version)
    assert code_of(exc) == "AccessDenied"
    # The owner holds s3:BypassGovernanceRetention.
    s3.delete_object(Bucket=locked, Key="k", VersionId=version, BypassGovernanceRetention=True)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=locked, Key="k", VersionId=version)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_put_object_with_lock_headers(s3: Any, locked: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE")
    assert code_of(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=datetime.now(UTC) - timedelta(days=1))
    assert code_of(exc) == "InvalidArgument"
    until = soon()
    version = s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE",
                            ObjectLockRetainUntilDate=until,
                            ObjectLockLegalHoldStatus="OFF")["VersionId"]
    got = s3.get_object(Bucket=locked, Key="k")
    assert got["Body"].read() == b"x"
    assert got["ObjectLockMode"] == "COMPLIANCE"
    assert got["ObjectLockRetainUntilDate"] == until
    assert got["ObjectLockLegalHoldStatus"] == "OFF"
    # COMPLIANCE: no bypass, no shortening, no downgrade; extending is fine.
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="k", VersionId=version,
                         BypassGovernanceRetention=True)
    assert code_of(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.put_object_retention(Bucket=locked, Key="k", VersionId=version, Retention={
            "Mode": "COMPLIANCE", "RetainUntilDate": until - timedelta(hours=1)},
            BypassGovernanceRetention=True)
    assert code_of(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.put_object_retention(Bucket=locked, Key="k", VersionId=version, Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": until + timedelta(days=1)})
    assert code_of(exc) == "AccessDenied"
    later = until + timedelta(days=3)
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=version,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    assert s3.get_object_retention(Bucket=locked, Key="k")["Retention"][
        "RetainUntilDate"] == later
    result = s3.delete_objects(Bucket=locked, BypassGovernanceRetention=True, Delete={
        "Objects": [{"Key": "k", "VersionId": version}]})
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("k", "AccessDenied")]
    assert "Deleted" not in result or result["Deleted"] == []


def test_governance_retention_can_be_bypassed(s3: Any, locked: str) -> None:
    until = soon(5)
    version = s3.put_object(Bucket=locked, Key="g", Body=b"x", ObjectLockMode="GOVERNANCE",
                            ObjectLockRetainUntilDate=until)["VersionId"]
    shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": until - timedelta(days=2)}
    with pytest.raises(ClientError) as exc:
        s3.put_object_retention(Bucket=locked, Key="g", Retention=shorter)
    assert code_of(exc) == "AccessDenied"
    s3.put_object_retention(Bucket=locked, Key="g", Retention=shorter,
                            BypassGovernanceRetention=True)
    assert s3.get_object_retention(Bucket=locked, Key="g")["Retention"][
        "RetainUntilDate"] == shorter["RetainUntilDate"]
    with pytest.raises(ClientError) as exc:
        s3.put_object_retention(Bucket=locked, Key="g", Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) - timedelta(days=1)})
    assert code_of(exc) == "InvalidArgument"
    blocked = s3.delete_objects(Bucket=locked, Delete={
        "Objects": [{"Key": "g", "VersionId": version}]})
    assert blocked["Errors"][0]["Code"] == "AccessDenied"
    done = s3.delete_objects(Bucket=locked, BypassGovernanceRetention=True, Delete={
        "Objects": [{"Key": "g", "VersionId": version}]})
    assert done["Deleted"] == [{"Key": "g", "VersionId": version}]


def test_legal_hold_blocks_deletion(s3: Any, locked: str) -> None:
    version = s3.put_object(Bucket=locked, Key="h", Body=b"x")["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.get_object_legal_hold(Bucket=locked, Key="h")
    assert code_of(exc) == "NoSuchObjectLockConfiguration"
    with pytest.raises(ClientError) as exc:
        s3.get_object_retention(Bucket=locked, Key="h")
    assert code_of(exc) == "NoSuchObjectLockConfiguration"
    s3.put_object_legal_hold(Bucket=locked, Key="h", VersionId=version,
                             LegalHold={"Status": "ON"})
    assert s3.get_object_legal_hold(Bucket=locked, Key="h")["LegalHold"] == {"Status": "ON"}
    assert s3.head_object(Bucket=locked, Key="h")["ObjectLockLegalHoldStatus"] == "ON"
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="h", VersionId=version,
                         BypassGovernanceRetention=True)
    assert code_of(exc) == "AccessDenied"
    s3.put_object_legal_hold(Bucket=locked, Key="h", LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=locked, Key="h", VersionId=version)


def test_copy_and_multipart_get_the_destination_lock(s3: Any, locked: str) -> None:
    until = soon(3)
    s3.put_object(Bucket=locked, Key="src", Body=b"x", ObjectLockMode="COMPLIANCE",
                  ObjectLockRetainUntilDate=until)
    s3.copy_object(Bucket=locked, Key="dst", CopySource={"Bucket": locked, "Key": "src"})
    assert "ObjectLockMode" not in s3.head_object(Bucket=locked, Key="dst")
    upload = s3.create_multipart_upload(Bucket=locked, Key="mp", ObjectLockMode="GOVERNANCE",
                                        ObjectLockRetainUntilDate=until)["UploadId"]
    etag = s3.upload_part(Bucket=locked, Key="mp", UploadId=upload, PartNumber=1,
                          Body=b"y")["ETag"]
    s3.complete_multipart_upload(Bucket=locked, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    head = s3.head_object(Bucket=locked, Key="mp")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"] == until


def test_bypass_needs_the_permission(two_accounts: Server) -> None:
    owner = two_accounts.client("s3", aws_access_key_id="AKIAOWNER",
                                aws_secret_access_key="owner-secret")
    other = two_accounts.client("s3", aws_access_key_id="AKIAOTHER",
                                aws_secret_access_key="other-secret")
    owner.create_bucket(Bucket="governed", ObjectLockEnabledForBucket=True)
    versions = [owner.put_object(Bucket="governed", Key="k", Body=b"x",
                                 ObjectLockMode="GOVERNANCE",
                                 ObjectLockRetainUntilDate=soon())["VersionId"]
                for _ in range(3)]

    def policy(*statements: dict[str, Any]) -> None:
        owner.put_bucket_policy(Bucket="governed", Policy=json.dumps(
            {"Version": "2012-10-17", "Statement": list(statements)}))

    delete = {"Effect": "Allow", "Principal": {"AWS": "222222222222"},
              "Action": "s3:DeleteObjectVersion", "Resource": "arn:aws:s3:::governed/*"}
    policy(delete)
    with pytest.raises(ClientError) as exc:
        other.delete_object(Bucket="governed", Key="k", VersionId=versions[0],
                            BypassGovernanceRetention=True)
    assert code_of(exc) == "AccessDenied"
    policy(delete, delete | {"Action": "s3:BypassGovernanceRetention"})
    other.delete_object(Bucket="governed", Key="k", VersionId=versions[0],
                        BypassGovernanceRetention=True)
    # An explicit Deny takes the permission from the owner too.
    policy({"Effect": "Deny", "Principal": "*", "Action": "s3:BypassGovernanceRetention",
            "Resource": "arn:aws:s3:::governed/*"})
    with pytest.raises(ClientError) as exc:
        owner.delete_object(Bucket="governed", Key="k", VersionId=versions[1],
                            BypassGovernanceRetention=True)
    assert code_of(exc) == "AccessDenied"
    owner.delete_bucket_policy(Bucket="governed")
    owner.delete_object(Bucket="governed", Key="k", VersionId=versions[1],
                        BypassGovernanceRetention=True)
