"""S3 versioning through boto3: versions, delete markers, null versions, listing."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def enable(s3: Any, bucket: str, status: str = "Enabled") -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def test_versions_and_delete_markers(s3: Any, bucket: str) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")  # becomes the null version
    enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2 and v1 != "null"
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"two" and got["VersionId"] == v2
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"before"

    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k")
    assert code_of(exc) == "NoSuchKey"
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k", VersionId=marker)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)

    listing = s3.list_object_versions(Bucket=bucket)
    assert [(v["VersionId"], v["IsLatest"]) for v in listing["Versions"]] == [
        (v2, False), (v1, False), ("null", False)]
    assert [(m["VersionId"], m["IsLatest"]) for m in listing["DeleteMarkers"]] == [(marker, True)]

    # Deleting the marker brings the newest version back.
    undo = s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert undo["DeleteMarker"] is True and undo["VersionId"] == marker
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    # Deleting a version for good.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId=v2)
    assert code_of(exc) == "NoSuchVersion"


def test_suspended_versioning_uses_null_version(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    kept = s3.put_object(Bucket=bucket, Key="s", Body=b"kept")["VersionId"]
    enable(s3, bucket, "Suspended")
    # The write is stored as the null version, but answers without x-amz-version-id.
    assert "VersionId" not in s3.put_object(Bucket=bucket, Key="s", Body=b"n1")
    s3.put_object(Bucket=bucket, Key="s", Body=b"n2")
    versions = s3.list_object_versions(Bucket=bucket, Prefix="s")["Versions"]
    assert [v["VersionId"] for v in versions] == ["null", kept]
    assert s3.get_object(Bucket=bucket, Key="s", VersionId="null")["Body"].read() == b"n2"
    marker = s3.delete_object(Bucket=bucket, Key="s")
    assert marker["VersionId"] == "null" and marker["DeleteMarker"] is True
    listing = s3.list_object_versions(Bucket=bucket, Prefix="s")
    assert [v["VersionId"] for v in listing["Versions"]] == [kept]
    assert s3.get_object(Bucket=bucket, Key="s", VersionId=kept)["Body"].read() == b"kept"


def test_copy_from_version_and_bucket_not_empty(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    old = s3.put_object(Bucket=bucket, Key="src", Body=b"old")["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"new")
    copied = s3.copy_object(Bucket=bucket, Key="dst",
                            CopySource={"Bucket": bucket, "Key": "src", "VersionId": old})
    assert copied["CopySourceVersionId"] == old and copied["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"old"
    for key in ("src", "dst"):
        s3.delete_object(Bucket=bucket, Key=key)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert code_of(exc) == "BucketNotEmpty"
    everything = s3.list_object_versions(Bucket=bucket)
    objects = [{"Key": v["Key"], "VersionId": v["VersionId"]}
               for v in everything.get("Versions", []) + everything.get("DeleteMarkers", [])]
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
    assert len(result["Deleted"]) == len(objects)
    s3.delete_bucket(Bucket=bucket)


def test_list_object_versions_pagination(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    expected = []
    for key in ("a", "b/1", "b/2", "c"):
        ids = [s3.put_object(Bucket=bucket, Key=key, Body=str(i).encode())["VersionId"]
               for i in range(3)]
        expected += [(key, vid) for vid in reversed(ids)]
    seen = []
    for page in s3.get_paginator("list_object_versions").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 5}):
        assert len(page.get("Versions", [])) <= 5
        seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
    assert seen == expected
    grouped = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["b/"]
    assert {v["Key"] for v in grouped["Versions"]} == {"a", "c"}


def test_unversioned_bucket_lists_null_versions(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    listing = s3.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in listing["Versions"]] == [
        ("plain", "null", True)]
    assert "VersionId" not in s3.put_object(Bucket=bucket, Key="plain", Body=b"y")
