"""S3 lifecycle through boto3: configuration, x-amz-expiration, and the sweeper at work
on a server whose lifecycle clock runs 40 days ahead."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server, start_server

_counter = iter(range(1_000_000))


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def rule(rule_id: str, **fields: Any) -> dict[str, Any]:
    return {"ID": rule_id, "Status": "Enabled", "Filter": fields.pop("Filter", {}), **fields}


def test_configuration_round_trip(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code_of(exc) == "NoSuchLifecycleConfiguration"
    rules = [
        rule("logs", Filter={"Prefix": "logs/"}, Expiration={"Days": 7}),
        rule("tagged", Filter={"And": {"Prefix": "t/", "Tags": [{"Key": "a", "Value": "b"}],
                                       "ObjectSizeGreaterThan": 10}},
             NoncurrentVersionExpiration={"NoncurrentDays": 3, "NewerNoncurrentVersions": 2}),
        rule("dated", Filter={"Tag": {"Key": "k", "Value": "v"}},
             Expiration={"Date": datetime(2030, 1, 1, tzinfo=UTC)}),
        rule("uploads", Filter={"Prefix": ""},
             AbortIncompleteMultipartUpload={"DaysAfterInitiation": 2}),
        {"ID": "old-style", "Status": "Disabled", "Prefix": "x/",
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
        rule("tiers", Filter={"Prefix": "cold/"}, Transitions=[
            {"Date": datetime(2031, 1, 1, tzinfo=UTC), "StorageClass": "GLACIER"}]),
    ]
    answer = s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    assert answer["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert got["Rules"] == rules
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code_of(exc) == "NoSuchLifecycleConfiguration"


@pytest.mark.parametrize(("bad", "code"), [
    (rule("r"), "InvalidRequest"),  # no action
    (rule("r", Expiration={"Days": 0}), "InvalidArgument"),
    (rule("r", Expiration={"Days": 1, "ExpiredObjectDeleteMarker": True}), "MalformedXML"),
    (rule("r", Expiration={"Date": datetime(2030, 1, 1, 12, tzinfo=UTC)}), "InvalidArgument"),
    (rule("r", NoncurrentVersionExpiration={"NoncurrentDays": -1}), "InvalidArgument"),
    (rule("r", Filter={"Tag": {"Key": "a", "Value": "b"}},
          AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1}), "InvalidRequest"),
    (rule("r", Filter={"Prefix": "a", "Tag": {"Key": "a", "Value": "b"}},
          Expiration={"Days": 1}), "MalformedXML"),
    ({"ID": "r", "Status": "Enabled", "Expiration": {"Days": 1}}, "MalformedXML"),
    ({"ID": "r", "Status": "On", "Prefix": "", "Expiration": {"Days": 1}}, "MalformedXML"),
    (rule("r" * 256, Expiration={"Days": 1}), "InvalidArgument"),
])
def test_configuration_validation(s3: Any, bucket: str, bad: dict[str, Any], code: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                              LifecycleConfiguration={"Rules": [bad]})
    assert code_of(exc) == code


def test_duplicate_rule_ids(s3: Any, bucket: str) -> None:
    twice = [rule("same", Expiration={"Days": 1}), rule("same", Expiration={"Days": 2})]
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                              LifecycleConfiguration={"Rules": twice})
    assert code_of(exc) == "InvalidArgument"


def test_expiration_header(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="logs/a", Body=b"x")
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        rule("week", Filter={"Prefix": "logs/"}, Expiration={"Days": 7}),
        rule("month", Filter={"Prefix": "logs/"}, Expiration={"Days": 30}),
    ]})
    head = s3.head_object(Bucket=bucket, Key="logs/a")
    expiry = (datetime.now(UTC) + timedelta(days=8)).strftime("%a, %d %b %Y 00:00:00 GMT")
    alt = (datetime.now(UTC) + timedelta(days=7)).strftime("%a, %d %b %Y 00:00:00 GMT")
    assert head["Expiration"] in (f'expiry-date="{expiry}", rule-id="week"',
                                  f'expiry-date="{alt}", rule-id="week"')
    assert "Expiration" not in s3.head_object(Bucket=bucket, Key="other")
    put = s3.put_object(Bucket=bucket, Key="logs/b", Body=b"y")
    assert 'rule-id="week"' in put["Expiration"]
    got = s3.get_object(Bucket=bucket, Key="logs/b")
    assert got["Body"].read() == b"y" and 'rule-id="week"' in got["Expiration"]


# ---------------------------------------------------------------- the sweeper


@pytest.fixture(scope="module")
def ahead(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose lifecycle sweeper runs every 0.2 s with its clock 40 days ahead."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KOBAKO_LIFECYCLE_CLOCK_OFFSET_DAYS", "40")
        patch.setenv("KOBAKO_LIFECYCLE_SWEEP_SECONDS", "0.2")
        data: Path = tmp_path_factory.mktemp("kobako-lifecycle") / "data"
        running = start_server(data)
    yield running
    running.stop()
    assert " -> 500 " not in running.log()
    assert "lifecycle sweep failed" not in running.log()


@pytest.fixture
def client(ahead: Server) -> Any:
    return ahead.client("s3")


def new_bucket(client: Any, **kwargs: Any) -> str:
    name = f"lc-{os.getpid()}-{next(_counter)}"
    client.create_bucket(Bucket=name, **kwargs)
    return name


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the sweeper did not get there in time")
        time.sleep(0.1)
    time.sleep(0.5)  # a few more sweeps: what should stay, stays


def keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def versions(client: Any, bucket: str, prefix: str) -> list[tuple[str, bool]]:
    """(version id, is a delete marker), newest first within each key."""
    listing = client.list_object_versions(Bucket=bucket, Prefix=prefix)
    found = [(v["Key"], v["LastModified"], v["VersionId"], False)
             for v in listing.get("Versions", [])]
    found += [(m["Key"], m["LastModified"], m["VersionId"], True)
              for m in listing.get("DeleteMarkers", [])]
    found.sort(key=lambda item: (item[0], -item[1].timestamp()))
    return [(vid, marker) for _, _, vid, marker in found]


def test_sweeper_expires_current_objects(client: Any) -> None:
    bucket = new_bucket(client)
    for key in ("logs/1", "logs/2", "keep/1", "tagged", "small", "big"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x" * (100 if key == "big" else 1),
                          Tagging="expire=yes" if key == "tagged" else "")
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        rule("logs", Filter={"Prefix": "logs/"}, Expiration={"Days": 1}),
        rule("tags", Filter={"Tag": {"Key": "expire", "Value": "yes"}},
             Expiration={"Days": 30}),
        rule("size", Filter={"ObjectSizeGreaterThan": 50}, Expiration={"Days": 2}),
        rule("later", Filter={"Prefix": "keep/"}, Expiration={"Days": 60}),
        rule("off", Filter={"Prefix": "small"}, Expiration={"Days": 1}) | {"Status": "Disabled"},
    ]})
    eventually(lambda: keys(client, bucket) == ["keep/1", "small"])


def test_sweeper_in_a_versioned_bucket(client: Any) -> None:
    bucket = new_bucket(client)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    current = client.put_object(Bucket=bucket, Key="cur/x", Body=b"x")["VersionId"]
    nc = [client.put_object(Bucket=bucket, Key="nc", Body=str(i).encode())["VersionId"]
          for i in range(4)]
    gone = client.put_object(Bucket=bucket, Key="m", Body=b"x")["VersionId"]
    marker = client.delete_object(Bucket=bucket, Key="m")["VersionId"]
    client.delete_object(Bucket=bucket, Key="m", VersionId=gone)
    lone = client.put_object(Bucket=bucket, Key="d/lone", Body=b"x")["VersionId"]
    client.delete_object(Bucket=bucket, Key="d/lone")
    client.delete_object(Bucket=bucket, Key="d/lone", VersionId=lone)
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        rule("current", Filter={"Prefix": "cur/"}, Expiration={"Days": 1}),
        rule("noncurrent", Filter={"Prefix": "nc"},
             NoncurrentVersionExpiration={"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}),
        rule("markers", Filter={"Prefix": "m"}, Expiration={"ExpiredObjectDeleteMarker": True}),
        # Expiration in Days also clears delete markers left alone once that old.
        rule("days", Filter={"Prefix": "d/"}, Expiration={"Days": 3}),
    ]})
    eventually(lambda: len(versions(client, bucket, "nc")) == 2
               and versions(client, bucket, "m") == []
               and versions(client, bucket, "d/") == []
               and len(versions(client, bucket, "cur/")) == 2)
    # Current version expired: a delete marker on top, the data kept as noncurrent.
    cur = versions(client, bucket, "cur/")
    assert cur[0][1] is True and cur[1] == (current, False)
    assert versions(client, bucket, "nc") == [(nc[3], False), (nc[2], False)]
    assert marker  # the lone delete marker went


def test_sweeper_respects_object_lock(client: Any) -> None:
    bucket = new_bucket(client, ObjectLockEnabledForBucket=True)
    until = datetime.now(UTC) + timedelta(days=100)
    held = client.put_object(Bucket=bucket, Key="l", Body=b"1", ObjectLockMode="COMPLIANCE",
                             ObjectLockRetainUntilDate=until)["VersionId"]
    free = client.put_object(Bucket=bucket, Key="l", Body=b"2")["VersionId"]
    hold = client.put_object(Bucket=bucket, Key="l", Body=b"3",
                             ObjectLockLegalHoldStatus="ON")["VersionId"]
    latest = client.put_object(Bucket=bucket, Key="l", Body=b"4")["VersionId"]
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        rule("nc", NoncurrentVersionExpiration={"NoncurrentDays": 1}),
    ]})
    eventually(lambda: free not in [v for v, _ in versions(client, bucket, "l")])
    assert versions(client, bucket, "l") == [(latest, False), (hold, False), (held, False)]


def test_sweeper_aborts_stale_uploads(client: Any) -> None:
    bucket = new_bucket(client)
    stale = client.create_multipart_upload(Bucket=bucket, Key="up/a")["UploadId"]
    client.upload_part(Bucket=bucket, Key="up/a", UploadId=stale, PartNumber=1, Body=b"x")
    kept = client.create_multipart_upload(Bucket=bucket, Key="other")["UploadId"]
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        rule("mpu", Filter={"Prefix": "up/"},
             AbortIncompleteMultipartUpload={"DaysAfterInitiation": 7}),
    ]})
    eventually(lambda: [u["UploadId"] for u in client.list_multipart_uploads(
        Bucket=bucket).get("Uploads", [])] == [kept])
