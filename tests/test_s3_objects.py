"""S3 object semantics through boto3: ranges, conditions, copy, checksums, presign."""

from __future__ import annotations

import base64
import hashlib
import http.client
import time
import urllib.parse
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from conftest import Server


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def status_of(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def test_etag_is_md5(s3: Any, bucket: str) -> None:
    body = b"etag check"
    put = s3.put_object(Bucket=bucket, Key="e", Body=body)
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'


def test_repeated_request_headers_are_joined(s3: Any, bucket: str) -> None:
    """A header sent twice counts as its values joined with commas (RFC 9110, 5.3)."""
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "rep"})
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest("PUT", f"{parts.path}?{parts.query}")
        connection.putheader("Cache-Control", "no-cache")
        connection.putheader("Cache-Control", "max-age=5")
        connection.putheader("Content-Length", "3")
        connection.endheaders(b"abc")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert s3.head_object(Bucket=bucket, Key="rep")["CacheControl"] == "no-cache,max-age=5"


def test_ranges(s3: Any, bucket: str) -> None:
    body = bytes(range(256)) * 4
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=10-19")
    assert got["Body"].read() == body[10:20]
    assert got["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=-5")["Body"].read() == body[-5:]
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=1000-")["Body"].read() == body[1000:]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={len(body)}-")
    assert code_of(exc) == "InvalidRange"
    assert status_of(exc) == 416


def test_large_object_streams_ranges_across_parts(s3: Any, bucket: str) -> None:
    part = b"x" * (5 * 1024 * 1024)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    etags = []
    for number, fill in ((1, b"a"), (2, b"b"), (3, b"c")):
        data = fill * len(part) if number < 3 else fill * 100
        etags.append(s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
                                    PartNumber=number, Body=data)["ETag"])
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    start = len(part) - 3
    got = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={start}-{start + 5}")
    assert got["Body"].read() == b"aaabbb"
    head = s3.head_object(Bucket=bucket, Key="mp")
    assert head["ContentLength"] == 2 * len(part) + 100
    assert head["ETag"].endswith('-3"')
    assert head["PartsCount"] == 3
    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert second["ContentLength"] == len(part)
    assert second["Body"].read(10) == b"b" * 10


def test_conditional_get(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"cond")
    etag = put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"cond"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert code_of(exc) == "PreconditionFailed" and status_of(exc) == 412
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert status_of(exc) == 304
    future = datetime.now(UTC) + timedelta(days=1)
    past = datetime.now(UTC) - timedelta(days=1)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert status_of(exc) == 304
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)["Body"].read() == b"cond"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert status_of(exc) == 412


def test_conditional_put(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="once", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="once", Body=b"2", IfNoneMatch="*")
    assert code_of(exc) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"1"
    # If-Match alone also takes the conditional path (PUT skips it when no If-* is sent).
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="once", Body=b"3", IfMatch='"0000"')
    assert code_of(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="never", Body=b"3", IfMatch='"0000"')
    assert code_of(exc) == "NoSuchKey"
    etag = s3.head_object(Bucket=bucket, Key="once")["ETag"]
    s3.put_object(Bucket=bucket, Key="once", Body=b"4", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"4"


def test_response_overrides_and_content_headers(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="h", Body=b"x", ContentType="text/plain",
                  ContentDisposition="inline", CacheControl="max-age=60",
                  ContentLanguage="en", ContentEncoding="identity",
                  Expires=datetime(2030, 1, 1, tzinfo=UTC))
    head = s3.head_object(Bucket=bucket, Key="h")
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == "inline"
    assert head["ContentLanguage"] == "en"
    assert head["ContentEncoding"] == "identity"
    assert head["Expires"] == datetime(2030, 1, 1, tzinfo=UTC)
    got = s3.get_object(Bucket=bucket, Key="h", ResponseContentType="application/x-test",
                        ResponseContentDisposition="attachment; filename=a.txt")
    assert got["ContentType"] == "application/x-test"
    assert got["ContentDisposition"] == "attachment; filename=a.txt"


def test_storage_class(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="ia", Body=b"x", StorageClass="STANDARD_IA")
    assert s3.head_object(Bucket=bucket, Key="ia")["StorageClass"] == "STANDARD_IA"
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert {o["Key"]: o["StorageClass"] for o in listed}["ia"] == "STANDARD_IA"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", StorageClass="FASTEST")
    assert code_of(exc) == "InvalidStorageClass"


def test_copy_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src key+ü", Body=b"copy me", ContentType="text/x",
                  Metadata={"a": "1"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src key+ü"})
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"copy me"
    assert got["Metadata"] == {"a": "1"} and got["ContentType"] == "text/x"
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src key+ü",
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="text/y")
    got = s3.head_object(Bucket=bucket, Key="dst2")
    assert got["Metadata"] == {"b": "2"} and got["ContentType"] == "text/y"
    # Deleting the source leaves the copy intact.
    s3.delete_object(Bucket=bucket, Key="src key+ü")
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"copy me"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "dst"})
    assert code_of(exc) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "dst"},
                       CopySourceIfMatch='"nope"')
    assert code_of(exc) == "PreconditionFailed"


def test_delete_objects(s3: Any, bucket: str) -> None:
    for key in ("d1", "d2", "d3"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d1"}, {"Key": "d2"},
                                                                  {"Key": "missing"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["d1", "d2", "missing"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["d3"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d3"}], "Quiet": True})
    assert "Deleted" not in quiet
    s3.delete_object(Bucket=bucket, Key="never-existed")  # 204, as AWS


def test_crc32c_checksum(s3: Any, bucket: str) -> None:
    # botocore needs awscrt to compute CRC32C itself, so the value is sent explicitly.
    import crc32c

    body = b"castagnoli" * 50
    value = base64.b64encode(crc32c.crc32c(body).to_bytes(4, "big")).decode()
    put = s3.put_object(Bucket=bucket, Key="c32c", Body=body, ChecksumCRC32C=value)
    assert put["ChecksumCRC32C"] == value
    assert s3.head_object(Bucket=bucket, Key="c32c", ChecksumMode="ENABLED")[
        "ChecksumCRC32C"] == value
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="c32c-bad", Body=body + b"!", ChecksumCRC32C=value)
    assert code_of(exc) == "BadDigest"


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA1", "SHA256"])
def test_checksums(s3: Any, bucket: str, algorithm: str) -> None:
    body = b"checksum me" * 100
    put = s3.put_object(Bucket=bucket, Key=f"ck-{algorithm}", Body=body,
                        ChecksumAlgorithm=algorithm)
    expected = {
        "CRC32": base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode(),
        "SHA1": base64.b64encode(hashlib.sha1(body).digest()).decode(),
        "SHA256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
    }
    if algorithm in expected:
        assert put[f"Checksum{algorithm}"] == expected[algorithm]
    got = s3.get_object(Bucket=bucket, Key=f"ck-{algorithm}", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == put[f"Checksum{algorithm}"]
    assert got["Body"].read() == body


def test_bad_checksum_and_md5_are_refused(server: Server, s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"data",
                      ChecksumSHA256=base64.b64encode(hashlib.sha256(b"other").digest()).decode())
    assert code_of(exc) == "BadDigest"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"data",
                      ContentMD5=base64.b64encode(hashlib.md5(b"other").digest()).decode())
    assert code_of(exc) == "BadDigest"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="bad")
    assert status_of(exc) == 404


def test_presigned_get_and_put(server: Server, bucket: str) -> None:
    from botocore.config import Config as BotoConfig

    s3 = server.client("s3", config=BotoConfig(signature_version="s3v4"))
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p"},
                                        ExpiresIn=60)
    assert requests.put(put_url, data=b"presigned body", timeout=10).status_code == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"},
                                        ExpiresIn=60)
    response = requests.get(get_url, timeout=10)
    assert response.status_code == 200 and response.content == b"presigned body"
    tampered = get_url.replace("Key=p", "Key=q") if "Key=p" in get_url else get_url + "x"
    assert requests.get(tampered, timeout=10).status_code == 403
    expired = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"},
                                        ExpiresIn=1)
    time.sleep(2.1)
    response = requests.get(expired, timeout=10)
    assert response.status_code == 403 and b"AccessDenied" in response.content


def test_unsigned_request_is_denied(server: Server, bucket: str) -> None:
    response = requests.get(f"{server.url}/{bucket}", timeout=10)
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code>" in response.content
    assert response.headers.get("x-amz-request-id")


def test_virtual_host_addressing(server: Server, s3: Any, bucket: str) -> None:
    from botocore.config import Config as BotoConfig

    s3.put_object(Bucket=bucket, Key="vh/key.txt", Body=b"virtual")
    virtual = boto3.client(
        "s3", endpoint_url=f"http://localhost:{server.port}", region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=BotoConfig(s3={"addressing_style": "virtual"}, retries={"max_attempts": 1}))
    hosts: list[str] = []

    def to_loopback(request: Any, **_: Any) -> None:
        # bucket.localhost need not resolve here: connect to 127.0.0.1, keep the
        # signed virtual Host header.
        host = request.url.split("/")[2]
        hosts.append(host)
        request.headers["Host"] = host
        request.url = request.url.replace(host, f"127.0.0.1:{server.port}", 1)

    virtual.meta.events.register("before-send.s3", to_loopback)
    assert virtual.get_object(Bucket=bucket, Key="vh/key.txt")["Body"].read() == b"virtual"
    virtual.put_object(Bucket=bucket, Key="vh/two", Body=b"2")
    keys = [o["Key"] for o in virtual.list_objects_v2(Bucket=bucket, Prefix="vh/")["Contents"]]
    assert keys == ["vh/key.txt", "vh/two"]
    assert hosts and all(h.startswith(f"{bucket}.localhost") for h in hosts)


def test_default_boto3_presign_uses_sigv2(s3: Any, bucket: str) -> None:
    """boto3's default presigned URL for S3 is Signature Version 2: it must work too."""
    s3.put_object(Bucket=bucket, Key="v2", Body=b"legacy")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2"})
    assert "Signature=" in url and "X-Amz-Signature" not in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == b"legacy"
    assert requests.get(url.replace("Signature=", "Signature=x"), timeout=10).status_code == 403
    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "v2put"})
    assert requests.put(put, data=b"via v2", timeout=10).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="v2put")["Body"].read() == b"via v2"


def test_get_object_attributes(s3: Any, bucket: str) -> None:
    body = b"attributes"
    put = s3.put_object(Bucket=bucket, Key="attr", Body=body, ChecksumAlgorithm="SHA256")
    out = s3.get_object_attributes(Bucket=bucket, Key="attr",
                                   ObjectAttributes=["ETag", "ObjectSize", "StorageClass",
                                                     "Checksum"])
    assert out["ETag"] == put["ETag"].strip('"')
    assert out["ObjectSize"] == len(body) and out["StorageClass"] == "STANDARD"
    assert out["Checksum"]["ChecksumSHA256"] == put["ChecksumSHA256"]
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="attr", ObjectAttributes=["Nonsense"])
    assert code_of(exc) == "InvalidArgument"
