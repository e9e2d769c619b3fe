"""Large object GETs, which the server sends with sendfile: whole objects, ranges across
parts, HEAD, and the keep-alive connection reused after a sendfile body."""

from __future__ import annotations

import http.client
import os
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MIB = 1024 * 1024


def _multipart(s3: Any, bucket: str, key: str, parts: list[bytes]) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=i + 1,
                            Body=p)["ETag"] for i, p in enumerate(parts)]
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})


def test_large_get_whole_and_ranges_across_parts(s3: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(700 * 1024)]
    body = b"".join(parts)
    _multipart(s3, bucket, "big", parts)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == body
    size = len(body)
    for first, last in ((0, 5 * MIB + 10), (5 * MIB - 3, size - 1),
                        (300 * 1024, 700 * 1024), (size - 300 * 1024, size - 1)):
        got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={first}-{last}")
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(body)}"
        assert got["Body"].read() == body[first:last + 1]
    part = s3.get_object(Bucket=bucket, Key="big", PartNumber=2)
    assert part["Body"].read() == parts[1]
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == len(body)


def test_keep_alive_connection_after_large_bodies(server: Any, s3: Any, bucket: str) -> None:
    """Responses after a sendfile body on the same connection arrive whole and in order."""
    large = os.urandom(3 * MIB + 17)
    s3.put_object(Bucket=bucket, Key="large", Body=large)
    s3.put_object(Bucket=bucket, Key="small", Body=b"small body")
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    credentials = Credentials("test", "test")
    try:
        for key, expected in (("large", large), ("small", b"small body"), ("large", large),
                              ("large", large), ("small", b"small body")):
            request = AWSRequest(method="GET", url=f"{server.url}/{bucket}/{key}")
            S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
            conn.request("GET", f"/{bucket}/{key}", headers=dict(request.headers.items()))
            response = conn.getresponse()
            assert response.status == 200
            assert response.read() == expected
    finally:
        conn.close()
