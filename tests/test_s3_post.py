"""POST Object: browser-form uploads with a signed policy (boto3's generate_presigned_post)."""

from __future__ import annotations

from typing import Any

import requests

from conftest import Server


def test_presigned_post_uploads(server: Server, s3: Any, bucket: str) -> None:
    post = s3.generate_presigned_post(
        bucket, "uploads/${filename}",
        Fields={"Content-Type": "text/plain", "x-amz-meta-origin": "form"},
        Conditions=[["starts-with", "$key", "uploads/"], {"Content-Type": "text/plain"},
                    {"x-amz-meta-origin": "form"}, ["content-length-range", 1, 1000]],
        ExpiresIn=60)
    response = requests.post(post["url"], data=post["fields"],
                             files={"file": ("hello.txt", b"hello from a form")}, timeout=10)
    assert response.status_code == 204, response.text
    got = s3.get_object(Bucket=bucket, Key="uploads/hello.txt")
    assert got["Body"].read() == b"hello from a form"
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"origin": "form"}

    # success_action_status 201 answers with the PostResponse document.
    post = s3.generate_presigned_post(bucket, "doc.txt", Fields={"success_action_status": "201"},
                                      Conditions=[{"success_action_status": "201"}])
    response = requests.post(post["url"], data=post["fields"],
                             files={"file": ("x", b"x")}, timeout=10)
    assert response.status_code == 201 and b"<Key>doc.txt</Key>" in response.content


def test_post_policy_is_enforced(server: Server, s3: Any, bucket: str) -> None:
    post = s3.generate_presigned_post(bucket, "small.txt",
                                      Conditions=[["content-length-range", 1, 10]])
    too_big = requests.post(post["url"], data=post["fields"],
                            files={"file": ("f", b"x" * 100)}, timeout=10)
    assert too_big.status_code == 400 and b"EntityTooLarge" in too_big.content
    tampered = dict(post["fields"], key="elsewhere.txt")
    denied = requests.post(post["url"], data=tampered, files={"file": ("f", b"x")}, timeout=10)
    assert denied.status_code == 403
    extra = dict(post["fields"], **{"x-amz-meta-sneaky": "1"})
    denied = requests.post(post["url"], data=extra, files={"file": ("f", b"x")}, timeout=10)
    assert denied.status_code == 403 and b"Extra input fields" in denied.content
    forged = dict(post["fields"], signature="AAAA" + post["fields"]["signature"][4:])
    denied = requests.post(post["url"], data=forged, files={"file": ("f", b"x")}, timeout=10)
    assert denied.status_code == 403 and b"SignatureDoesNotMatch" in denied.content
    expired = s3.generate_presigned_post(bucket, "late.txt", ExpiresIn=-10)
    denied = requests.post(expired["url"], data=expired["fields"],
                           files={"file": ("f", b"x")}, timeout=10)
    assert denied.status_code == 403 and b"Policy expired" in denied.content
    # Nothing was stored by the refused uploads; an anonymous form needs a grant.
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    anonymous = requests.post(f"{server.url}/{bucket}", data={"key": "anon.txt"},
                              files={"file": ("f", b"x")}, timeout=10)
    assert anonymous.status_code == 403


def test_post_redirect(server: Server, s3: Any, bucket: str) -> None:
    post = s3.generate_presigned_post(
        bucket, "r.txt", Fields={"success_action_redirect": "http://example.test/done"},
        Conditions=[{"success_action_redirect": "http://example.test/done"}])
    response = requests.post(post["url"], data=post["fields"], files={"file": ("f", b"r")},
                             allow_redirects=False, timeout=10)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("http://example.test/done?bucket=")


def test_sigv4_presigned_post(server: Server, bucket: str) -> None:
    from botocore.config import Config as BotoConfig

    s3 = server.client("s3", config=BotoConfig(signature_version="s3v4"))
    post = s3.generate_presigned_post(bucket, "v4.txt")
    assert "x-amz-signature" in post["fields"]
    ok = requests.post(post["url"], data=post["fields"], files={"file": ("f", b"v4")},
                       timeout=10)
    assert ok.status_code == 204, ok.text
    assert s3.get_object(Bucket=bucket, Key="v4.txt")["Body"].read() == b"v4"
    forged = dict(post["fields"], **{"x-amz-signature": "0" * 64})
    denied = requests.post(post["url"], data=forged, files={"file": ("f", b"x")}, timeout=10)
    assert denied.status_code == 403 and b"SignatureDoesNotMatch" in denied.content
