"""ListObjects / ListObjectsV2 / ListMultipartUploads semantics through boto3."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

KEYS = [
    "a.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "d/4.txt", "e", "f/g/h", "ü/5", "z z/6",
]


@pytest.fixture
def filled(s3: Any, bucket: str) -> str:
    for key in KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


def test_v2_flat_and_sorted(s3: Any, filled: str) -> None:
    out = s3.list_objects_v2(Bucket=filled)
    assert [o["Key"] for o in out["Contents"]] == sorted(KEYS, key=lambda k: k.encode())
    assert out["KeyCount"] == len(KEYS) and out["IsTruncated"] is False


def test_v2_delimiter_and_prefix(s3: Any, filled: str) -> None:
    out = s3.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [o["Key"] for o in out["Contents"]] == ["a.txt", "e"]
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["b/", "d/", "f/", "z z/", "ü/"]
    out = s3.list_objects_v2(Bucket=filled, Delimiter="/", Prefix="b/")
    assert [o["Key"] for o in out["Contents"]] == ["b/1.txt", "b/2.txt"]
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["b/c/"]


def test_v2_pagination_with_common_prefixes(s3: Any, filled: str) -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"Bucket": filled, "Delimiter": "/", "MaxKeys": 2}
        if token:
            kwargs["ContinuationToken"] = token
        out = s3.list_objects_v2(**kwargs)
        pages += 1
        seen += [o["Key"] for o in out.get("Contents", [])]
        seen += [p["Prefix"] for p in out.get("CommonPrefixes", [])]
        assert out["KeyCount"] <= 2
        if not out["IsTruncated"]:
            break
        token = out["NextContinuationToken"]
    assert sorted(seen) == sorted(["a.txt", "e", "b/", "d/", "f/", "z z/", "ü/"])
    assert pages == 4


def test_v2_paginator_start_after_and_owner(s3: Any, filled: str) -> None:
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=filled, PaginationConfig={"PageSize": 3}) for o in page["Contents"]]
    assert keys == sorted(KEYS, key=lambda k: k.encode())
    out = s3.list_objects_v2(Bucket=filled, StartAfter="d/4.txt", FetchOwner=True)
    assert out["Contents"][0]["Key"] == "e"
    assert "Owner" in out["Contents"][0]
    assert "Owner" not in s3.list_objects_v2(Bucket=filled)["Contents"][0]


def test_url_encoding(s3: Any, filled: str) -> None:
    out = s3.list_objects_v2(Bucket=filled, Prefix="z z/", EncodingType="url")
    # Asked for explicitly, the encoding is left for the caller to undo.
    assert [o["Key"] for o in out["Contents"]] == ["z%20z/6"]
    assert out["Prefix"] == "z%20z/"


def test_v1_markers(s3: Any, filled: str) -> None:
    out = s3.list_objects(Bucket=filled, MaxKeys=3)
    assert [o["Key"] for o in out["Contents"]] == ["a.txt", "b/1.txt", "b/2.txt"]
    assert out["IsTruncated"] is True
    out = s3.list_objects(Bucket=filled, Marker="b/2.txt", MaxKeys=2)
    assert [o["Key"] for o in out["Contents"]] == ["b/c/3.txt", "d/4.txt"]
    out = s3.list_objects(Bucket=filled, Delimiter="/", MaxKeys=2)
    assert out["NextMarker"] == "b/"
    keys = [o["Key"] for page in s3.get_paginator("list_objects").paginate(
        Bucket=filled, PaginationConfig={"PageSize": 4}) for o in page["Contents"]]
    assert keys == sorted(KEYS, key=lambda k: k.encode())


def test_list_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="does-not-exist-at-all")
    assert exc.value.response["Error"]["Code"] == "NoSuchBucket"


def test_bucket_naming_rules(s3: Any) -> None:
    for bad in ("ab", "UPPER", "a..b", "192.168.1.1", "-start", "x" * 64, "xn--abc"):
        with pytest.raises(ClientError) as exc:
            s3.create_bucket(Bucket=bad)
        assert exc.value.response["Error"]["Code"] in ("InvalidBucketName",), bad


def test_bucket_not_empty_and_location(server: Any, s3: Any, filled: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=filled)
    assert exc.value.response["Error"]["Code"] == "BucketNotEmpty"
    west = server.client("s3", region_name="us-west-2")
    west.create_bucket(Bucket="west-bucket-x",
                       CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    assert west.get_bucket_location(Bucket="west-bucket-x")["LocationConstraint"] == "us-west-2"
    assert west.head_bucket(Bucket="west-bucket-x")["BucketRegion"] == "us-west-2"
    with pytest.raises(ClientError) as exc:
        west.create_bucket(Bucket="west-bucket-y")
    assert exc.value.response["Error"]["Code"] == "IllegalLocationConstraintException"
    with pytest.raises(ClientError) as exc:
        west.create_bucket(Bucket="west-bucket-x",
                           CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    assert exc.value.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"


def test_expected_bucket_owner(s3: Any, filled: str) -> None:
    s3.head_bucket(Bucket=filled, ExpectedBucketOwner="000000000000")
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=filled, ExpectedBucketOwner="123456789012")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
