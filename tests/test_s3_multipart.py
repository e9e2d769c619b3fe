"""Multipart uploads through boto3: the happy path and every documented refusal."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

MIB = 1024 * 1024


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_multipart_etag_and_listing(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="big", ContentType="app/x",
                                           Metadata={"m": "1"})["UploadId"]
    parts = [b"1" * (5 * MIB), b"2" * (5 * MIB), b"3" * 10]
    etags = [s3.upload_part(Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=i + 1,
                            Body=p)["ETag"] for i, p in enumerate(parts)]
    listed = s3.list_parts(Bucket=bucket, Key="big", UploadId=upload_id)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3]
    assert [p["Size"] for p in listed["Parts"]] == [len(p) for p in parts]
    page = s3.list_parts(Bucket=bucket, Key="big", UploadId=upload_id, MaxParts=2)
    assert page["IsTruncated"] and page["NextPartNumberMarker"] == 2
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [upload_id]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["ContentType"] == "app/x" and got["Metadata"] == {"m": "1"}
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(b"".join(parts)).digest()
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="big", UploadId=upload_id)
    assert code_of(exc) == "NoSuchUpload"


def test_multipart_refusals(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1,
                           Body=b"small")["ETag"]
    last = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=2,
                          Body=b"last")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": small}, {"PartNumber": 2, "ETag": last}]})
    assert code_of(exc) == "EntityTooSmall"
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": last}, {"PartNumber": 1, "ETag": small}]})
    assert code_of(exc) == "InvalidPartOrder"
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    assert code_of(exc) == "InvalidPart"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=10001, Body=b"x")
    assert code_of(exc) == "InvalidArgument"
    # A single (small) part completes fine: the last part may be any size.
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 2, "ETag": last}]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"last"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="k", UploadId="nope", PartNumber=1, Body=b"x")
    assert code_of(exc) == "NoSuchUpload"


def test_abort(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="gone", UploadId=upload_id, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=upload_id)
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=upload_id)
    assert code_of(exc) == "NoSuchUpload"


def test_upload_part_copy(s3: Any, bucket: str) -> None:
    source = bytes(range(256)) * (25 * 1024)  # 6.25 MiB
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="copied")["UploadId"]
    first = s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=upload_id, PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "source"},
                                CopySourceRange=f"bytes=0-{5 * MIB - 1}")
    second = s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=upload_id, PartNumber=2,
                                 CopySource={"Bucket": bucket, "Key": "source"},
                                 CopySourceRange=f"bytes={5 * MIB}-{len(source) - 1}")
    s3.complete_multipart_upload(Bucket=bucket, Key="copied", UploadId=upload_id,
                                 MultipartUpload={"Parts": [
                                     {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
                                     {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == source


def test_multipart_with_checksums(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="ck",
                                           ChecksumAlgorithm="SHA256")["UploadId"]
    parts = [b"a" * (5 * MIB), b"b" * 7]
    results = [s3.upload_part(Bucket=bucket, Key="ck", UploadId=upload_id, PartNumber=i + 1,
                              Body=p, ChecksumAlgorithm="SHA256") for i, p in enumerate(parts)]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="ck", UploadId=upload_id,
        MultipartUpload={"Parts": [
            {"PartNumber": i + 1, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]}
            for i, r in enumerate(results)]})
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    import base64
    assert done["ChecksumSHA256"] == base64.b64encode(composite).decode() + "-2"
