"""S3 core through boto3 against a real kobako process."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_bucket_round_trip(s3: Any) -> None:
    s3.create_bucket(Bucket="round-trip")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "round-trip" in names
    s3.head_bucket(Bucket="round-trip")
    assert s3.get_bucket_location(Bucket="round-trip")["LocationConstraint"] is None
    s3.delete_bucket(Bucket="round-trip")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="round-trip")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_put_get_object(s3: Any, bucket: str) -> None:
    body = b"hello world\n" * 1000
    put = s3.put_object(Bucket=bucket, Key="dir/hello.txt", Body=body, ContentType="text/plain",
                        Metadata={"color": "blue"})
    got = s3.get_object(Bucket=bucket, Key="dir/hello.txt")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"color": "blue"}
    assert got["ContentLength"] == len(body)


def test_missing_key_and_bucket(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="no-such-bucket-here", Key="nope")
    assert error_code(exc) == "NoSuchBucket"


def test_wrong_secret_is_rejected(server: Any) -> None:
    client = server.client("s3", aws_secret_access_key="wrong")
    with pytest.raises(ClientError) as exc:
        client.list_buckets()
    assert error_code(exc) == "SignatureDoesNotMatch"
    client = server.client("s3", aws_access_key_id="nobody")
    with pytest.raises(ClientError) as exc:
        client.list_buckets()
    assert error_code(exc) == "InvalidAccessKeyId"


def test_request_id_headers_per_service(server: Any, s3: Any, bucket: str) -> None:
    """S3 names a request in x-amz-request-id only (as AWS's S3 does); the JSON and
    query services in x-amzn-requestid, which their botocore parsers read."""
    put = s3.put_object(Bucket=bucket, Key="rid", Body=b"x")["ResponseMetadata"]
    assert put["RequestId"] and put["HTTPHeaders"]["x-amz-request-id"] == put["RequestId"]
    assert "x-amzn-requestid" not in put["HTTPHeaders"]
    error = s3.list_objects_v2(Bucket=bucket, Prefix="none")["ResponseMetadata"]
    assert "x-amzn-requestid" not in error["HTTPHeaders"]
    logs = server.client("logs").describe_log_groups()["ResponseMetadata"]
    assert logs["RequestId"] and logs["HTTPHeaders"]["x-amzn-requestid"] == logs["RequestId"]
