"""Acknowledged writes survive kill -9; bad input never gets a 500 or damages data."""

from __future__ import annotations

import hashlib
import http.client
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import Server, start_server
from s3_helpers import AcknowledgedPuts


def test_acknowledged_objects_survive_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir)
    puts = AcknowledgedPuts("durable")
    try:
        s3 = server.client("s3")
        s3.create_bucket(Bucket="durable")

        def writer(worker: int) -> None:
            client = server.client("s3")
            for index in range(10_000):
                if puts.stop.is_set():
                    return
                body = os.urandom(1000 + (index * 7919) % 300_000)
                if not puts.put(client, f"w{worker}/obj-{index}", body):
                    return

        expected = puts.kill_server_after(server, writer, workers=4, count=80, poll_s=0.02)
    finally:
        server.stop()
    assert len(expected) >= 80
    restarted = start_server(data_dir)
    try:
        s3 = restarted.client("s3")
        puts.assert_intact(s3, expected)
        listed = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket="durable") for o in page.get("Contents", [])}
        assert set(expected) <= listed
        # The store is still writable after the crash.
        s3.put_object(Bucket="durable", Key="after", Body=b"ok")
        assert s3.get_object(Bucket="durable", Key="after")["Body"].read() == b"ok"
    finally:
        restarted.stop()
    assert " -> 500 " not in restarted.log()


def _raw(server: Server, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None, sign: bool = True) -> tuple[int, bytes]:
    """Send one request byte for byte, signed with SigV4 over exactly what is sent."""
    url = f"{server.url}{path}"
    all_headers = dict(headers or {})
    if sign:
        request = AWSRequest(method=method, url=url, data=body, headers=all_headers)
        request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
        S3SigV4Auth(Credentials("test", "test"), "s3", "us-east-1").add_auth(request)
        all_headers = dict(request.headers.items())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in all_headers.items():
            conn.putheader(name, value)
        if "Content-Length" not in all_headers:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# name, method, path, body, headers, the status AWS answers.
BAD_REQUESTS: list[tuple[str, str, str, bytes, dict[str, str], int]] = [
    ("malformed-xml-delete", "POST", "/{b}?delete", b"<Delete><Object><Key>x", {}, 400),
    ("not-xml-complete", "POST", "/{b}/k?uploadId=abc", b"\x00\xff garbage", {}, 400),
    ("xml-bomb", "POST", "/{b}?delete",
     b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
     b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
     b']><Delete><Object><Key>&c;</Key></Object></Delete>', {}, 400),
    ("huge-max-keys", "GET", "/{b}?list-type=2&max-keys=99999999999999999999", b"", {}, 200),
    ("negative-max-keys", "GET", "/{b}?list-type=2&max-keys=-1", b"", {}, 400),
    ("bad-part-number", "PUT", "/{b}/k?partNumber=abc&uploadId=x", b"x", {}, 400),
    ("bad-range", "GET", "/{b}/victim", b"", {"Range": "bytes=zzz"}, 200),
    ("absurd-range", "GET", "/{b}/victim", b"", {"Range": "bytes=" + "9" * 400 + "-"}, 416),
    ("long-header", "GET", "/{b}/victim", b"", {"x-amz-meta-big": "v" * 9000}, 200),
    ("bad-content-md5", "PUT", "/{b}/victim", b"new", {"Content-MD5": "!!notbase64!!"}, 400),
    ("bad-copy-source", "PUT", "/{b}/copy", b"", {"x-amz-copy-source": "%%%"}, 400),
    ("traversal-key", "PUT", "/{b}/../../../../etc/passwd", b"pwned", {}, 200),
    ("encoded-traversal", "PUT", "/{b}/..%2F..%2F..%2Fescape", b"pwned", {}, 200),
    ("bad-storage-class", "PUT", "/{b}/victim", b"new", {"x-amz-storage-class": "NOPE"}, 400),
    ("bad-checksum-algo", "PUT", "/{b}/victim", b"new",
     {"x-amz-sdk-checksum-algorithm": "MD4"}, 400),
    ("bad-bucket-name", "PUT", "/Bad_Bucket", b"", {}, 400),
    ("unknown-subresource", "GET", "/{b}?nonsense-subresource", b"", {}, 200),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_never_500_and_never_damages(
    server: Server, s3: Any, bucket: str, case: tuple[str, str, str, bytes, dict[str, str], int]
) -> None:
    _, method, path, body, headers, expected = case
    s3.put_object(Bucket=bucket, Key="victim", Body=b"precious")
    status, answer = _raw(server, method, path.format(b=bucket), body, headers)
    assert status == expected, answer
    assert s3.get_object(Bucket=bucket, Key="victim")["Body"].read() == b"precious"
    data_root = server.data_dir.resolve()
    for escaped in (data_root.parent / "escape", Path("/etc/passwd")):
        assert not escaped.exists() or b"pwned" not in escaped.read_bytes()


def test_traversal_keys_are_plain_keys(s3: Any, bucket: str, server: Server) -> None:
    key = "../../../../tmp/kobako-escape-test"
    s3.put_object(Bucket=bucket, Key=key, Body=b"inside")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"inside"
    assert not Path("/tmp/kobako-escape-test").exists()


def test_bad_signature_and_truncated_body(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="victim", Body=b"precious")
    status, answer = _raw(server, "PUT", f"/{bucket}/victim", b"x", {
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/s3/aws4_request, "
                         "SignedHeaders=host, Signature=" + "0" * 64,
        "x-amz-date": "20200101T000000Z", "x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
        sign=False)
    assert status == 403
    assert b"RequestTimeTooSkewed" in answer or b"SignatureDoesNotMatch" in answer
    status, answer = _raw(server, "PUT", f"/{bucket}/victim", b"x", {"Authorization": "garbage"},
                          sign=False)
    assert 400 <= status < 500
    # A body shorter than its Content-Length: the client gives up; nothing is stored.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    request = AWSRequest(method="PUT", url=f"{server.url}/{bucket}/victim",
                         data=b"y" * 1000, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials("test", "test"), "s3", "us-east-1").add_auth(request)
    conn.putrequest("PUT", f"/{bucket}/victim", skip_accept_encoding=True)
    for name, value in request.headers.items():
        conn.putheader(name, value)
    conn.putheader("Content-Length", "1000")
    conn.endheaders(b"y" * 10)
    conn.close()
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="nothing-here")
    assert s3.get_object(Bucket=bucket, Key="victim")["Body"].read() == b"precious"
