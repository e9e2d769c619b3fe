"""SigV2 verification against botocore's own HmacV1 signers, boto3's default presigned
URLs, and the examples of AWS's SigV2 documentation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials

from kobako.protocol.errors import AwsError
from kobako.protocol.sigv2 import parse_auth_v2, verify_v2
from kobako.protocol.sigv4 import AuthContext, Credential, RequestView, parse_auth
from sig_helpers import AKID, CRED, SECRET, lookup, view, view_prepared, with_headers

ENDPOINT = "http://localhost:4566"
ODD_KEY_URL = f"{ENDPOINT}/bucket/some%20dir/k%C3%BCy%2Bplus~%3A%E2%9C%93.txt"


def sign(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    secret: str = SECRET,
    expires: int | None = None,
    auth_path: str | None = None,
) -> RequestView:
    """Sign with botocore's HmacV1Auth, or HmacV1QueryAuth when `expires` is given.

    Query parameters go in `url` already encoded, as botocore's serializer puts them
    there before signing (AWSRequest's own `params` are only added after it).
    """
    request = AWSRequest(method=method, url=url, headers=headers or {})
    request.auth_path = auth_path
    if expires is None:
        HmacV1Auth(Credentials(AKID, secret)).add_auth(request)
    else:
        HmacV1QueryAuth(Credentials(AKID, secret), expires=expires).add_auth(request)
    return view_prepared(request.prepare())


def changed(req: RequestView, **changes: str) -> RequestView:
    fields = {"method": req.method, "raw_path": req.raw_path, "query_string": req.query_string}
    fields.update(changes)
    return RequestView(headers=req.headers, **fields)


def error_of(req: RequestView, **kwargs: object) -> AwsError:
    with pytest.raises(AwsError) as caught:
        verify_v2(req, lookup, **kwargs)  # type: ignore[arg-type]
    return caught.value


def signed_at(req: RequestView) -> datetime:
    return parsedate_to_datetime(req.headers["date"])


def test_header_auth_get_and_put_with_odd_keys() -> None:
    get = sign("GET", ODD_KEY_URL)
    assert get.headers["authorization"].startswith(f"AWS {AKID}:")
    assert parse_auth_v2(get) == AKID
    assert parse_auth(get) is None  # SigV4 leaves it to SigV2
    ctx = verify_v2(get, lookup)
    assert isinstance(ctx, AuthContext)
    assert (ctx.credential, ctx.service, ctx.region) == (CRED, "s3", "us-east-1")
    assert (ctx.presigned, ctx.payload_hash, ctx.signing_key) == (False, "UNSIGNED-PAYLOAD", b"")
    assert ctx.signature == get.headers["authorization"].rpartition(":")[2]

    put = sign(
        "PUT", ODD_KEY_URL,
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "x-amz-meta-Colour": "  blue  and green ",
            "X-Amz-Acl": "private",
            "x-amz-storage-class": "STANDARD",
        },
    )  # fmt: skip
    assert verify_v2(put, lookup).presigned is False
    # Every signed part is covered.
    for tampered in (
        with_headers(put, content_type="text/html"),
        with_headers(put, content_md5="XrY7u+Ae7tCTyyK7j1rNww=="),
        with_headers(put, x_amz_meta_colour="red"),
        with_headers(put, x_amz_meta_extra="added"),  # an x-amz-* header nobody signed
        changed(put, method="POST"),
        changed(put, raw_path=put.raw_path.replace("%20", "+")),
        changed(put, raw_path="/bucket/other"),
    ):
        err = error_of(tampered)
        assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)
    # Headers outside the string to sign may change freely.
    assert verify_v2(with_headers(put, user_agent="curl", content_length="9"), lookup)


def test_sub_resources_are_signed_and_other_params_are_not() -> None:
    cases = [
        ("POST", f"{ENDPOINT}/bucket/a%20key?uploads", "uploads"),
        ("PUT", f"{ENDPOINT}/bucket/a%20key?partNumber=1&uploadId=x%2By", "uploadId=x+y"),
        ("GET", f"{ENDPOINT}/bucket/k?versionId=3&acl", "versionId=3"),
        ("GET", f"{ENDPOINT}/bucket/?list-type=2&prefix=a%20b&tagging", "tagging"),
        (
            "GET",
            f"{ENDPOINT}/bucket/k?response-content-type=text%2Fplain%3B%20charset%3Dutf-8"
            "&response-content-disposition=attachment",
            "response-content-type=text/plain",
        ),
    ]
    for method, url, part in cases:
        req = sign(method, url)
        ctx = verify_v2(req, lookup)
        assert ctx.credential == CRED, url
        # The sub-resources (decoded) are in the string to sign...
        wrong = sign(method, url, secret="not-the-secret")
        string_to_sign = error_of(wrong).fields["StringToSign"]
        assert part in string_to_sign.rpartition("\n")[2], (url, string_to_sign)
        # ...so dropping or changing one breaks the signature.
        for query in ("", req.query_string.replace("=", "=0", 1) + "&uploads"):
            assert error_of(changed(req, query_string=query)).code == "SignatureDoesNotMatch"
    # Parameters outside the list are not signed in SigV2 (as on AWS).
    listing = sign("GET", f"{ENDPOINT}/bucket/?list-type=2&prefix=a")
    assert verify_v2(changed(listing, query_string="list-type=2&prefix=zzz"), lookup)
    # A bare sub-resource and an empty value are signed differently, as botocore does.
    uploads = sign("POST", f"{ENDPOINT}/bucket/k?uploads")
    assert error_of(changed(uploads, query_string="uploads=")).code == "SignatureDoesNotMatch"


def test_presigned_urls_from_hmacv1_query_auth() -> None:
    get = sign(
        "GET", ODD_KEY_URL + "?response-content-type=text%2Fplain%3B%20charset%3Dutf-8"
        "&versionId=v1&x-id=GetObject", expires=3600,
    )  # fmt: skip
    assert "authorization" not in get.headers
    assert parse_auth_v2(get) == AKID and parse_auth(get) is None
    ctx = verify_v2(get, lookup)
    assert ctx.presigned and ctx.payload_hash == "UNSIGNED-PAYLOAD"
    expires = int(dict(p.split("=") for p in get.query_string.split("&"))["Expires"])
    deadline = datetime.fromtimestamp(expires, UTC)
    assert verify_v2(get, lookup, now=deadline).presigned
    err = error_of(get, now=deadline + timedelta(seconds=1))
    assert (err.code, err.status, err.message) == ("AccessDenied", 403, "Request has expired")
    # The expiry, the path and the sub-resources are covered.
    for tampered in (
        changed(get, query_string=get.query_string.replace(f"={expires}", f"={expires + 1}")),
        changed(get, query_string=get.query_string.replace("text%2Fplain", "text%2Fhtml")),
        changed(get, query_string=get.query_string.replace("versionId=v1", "versionId=v2")),
        changed(get, raw_path=get.raw_path.replace("some", "other")),
        changed(get, method="PUT"),
    ):
        assert error_of(tampered).code == "SignatureDoesNotMatch"


def test_boto3_default_presigned_urls_are_sigv2() -> None:
    client = boto3.client(
        "s3", endpoint_url=ENDPOINT, region_name="us-east-1",
        aws_access_key_id=AKID, aws_secret_access_key=SECRET, aws_session_token="tok/en+1",
    )  # fmt: skip
    get_url = client.generate_presigned_url(
        "get_object",
        Params={"Bucket": "bucket", "Key": "a b/ü+x~y", "ResponseContentType": "text/csv"},
        ExpiresIn=60,
    )
    assert "AWSAccessKeyId=" in get_url and "X-Amz-" not in get_url
    # Fetched as a browser would: nothing but the URL.
    ctx = verify_v2(view("GET", get_url), lookup)
    assert ctx.presigned and ctx.credential == CRED
    put_url = client.generate_presigned_url(
        "put_object",
        Params={"Bucket": "bucket", "Key": "k", "ContentType": "text/plain",
                "Metadata": {"colour": "blue"}},
        ExpiresIn=60,
    )  # fmt: skip
    # The signed Content-Type must be sent; x-amz-* travel in the query (session token too).
    assert verify_v2(view("PUT", put_url, {"Content-Type": "text/plain"}), lookup).presigned
    assert error_of(view("PUT", put_url)).code == "SignatureDoesNotMatch"
    assert error_of(view("PUT", put_url, {"Content-Type": "text/html"})).code == (
        "SignatureDoesNotMatch"
    )
    forged = put_url.replace("x-amz-meta-colour=blue", "x-amz-meta-colour=red")
    assert error_of(view("PUT", forged, {"Content-Type": "text/plain"})).code == (
        "SignatureDoesNotMatch"
    )
    token = put_url.replace("x-amz-security-token=tok", "x-amz-security-token=TOK")
    assert error_of(view("PUT", token, {"Content-Type": "text/plain"})).code == (
        "SignatureDoesNotMatch"
    )


@pytest.mark.parametrize("addressing", ["path", "virtual"])
def test_boto3_header_signed_requests(addressing: str) -> None:
    """Real boto3 calls with signature_version='s3', caught before they are sent."""
    sent: list[AWSPreparedRequest] = []

    class Empty:
        def stream(self, **kwargs: object) -> object:
            yield b""

    def capture(request: AWSPreparedRequest, **kwargs: object) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, Empty())

    client = boto3.client(
        "s3", endpoint_url=ENDPOINT, region_name="us-east-1",
        aws_access_key_id=AKID, aws_secret_access_key=SECRET,
        config=Config(signature_version="s3", s3={"addressing_style": addressing}),
    )  # fmt: skip
    client.meta.events.register("before-send", capture)
    client.put_object(
        Bucket="bucket", Key="a b/ü+x~y", Body=b"hi", ContentType="text/plain",
        Metadata={"k": " v "},
    )  # fmt: skip
    client.create_multipart_upload(Bucket="bucket", Key="a b")
    client.upload_part(Bucket="bucket", Key="a b", UploadId="u/1", PartNumber=2, Body=b"x")
    client.list_objects_v2(Bucket="bucket", Prefix="a b")
    client.get_object(Bucket="bucket", Key="k", ResponseContentType="text/csv", VersionId="3")
    client.delete_objects(Bucket="bucket", Delete={"Objects": [{"Key": "x"}]})
    client.list_buckets()
    assert len(sent) == 7
    for request in sent:
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        req = view(request.method, request.url, headers)
        host = urlsplit(request.url).hostname or ""
        bucket = "bucket" if host.startswith("bucket.") else None
        if request is not sent[-1]:  # ListBuckets names no bucket
            assert (addressing == "virtual") == (bucket is not None), request.url
        ctx = verify_v2(req, lookup, bucket=bucket)
        assert ctx.credential == CRED and not ctx.presigned, request.url
        moved = changed(req, raw_path=req.raw_path + "x")
        assert error_of(moved, bucket=bucket).code == "SignatureDoesNotMatch"


def test_virtual_hosted_requests_sign_the_bucket() -> None:
    req = sign("GET", "http://bucket.localhost:4566/k%20ey?acl", auth_path="/bucket/k%20ey")
    assert req.raw_path == "/k%20ey"
    assert verify_v2(req, lookup, bucket="bucket").credential == CRED
    assert error_of(req).code == "SignatureDoesNotMatch"
    assert error_of(req, bucket="other").code == "SignatureDoesNotMatch"
    # A bucket operation: botocore's auth path ends in '/', as the request path is '/'.
    root = sign("GET", "http://bucket.localhost:4566/?versioning", auth_path="/bucket/")
    assert verify_v2(root, lookup, bucket="bucket").credential == CRED


def test_wrong_secret_and_unknown_key() -> None:
    req = sign("GET", ODD_KEY_URL, headers={"x-amz-meta-a": "1"})
    err = error_of(sign("GET", ODD_KEY_URL, headers={"x-amz-meta-a": "1"}, secret="nope"))
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)
    assert err.message == (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )
    assert err.fields["AWSAccessKeyId"] == AKID
    assert err.fields["StringToSign"] == (
        f"GET\n\n\n{req.headers['date']}\nx-amz-meta-a:1\n{req.raw_path}"
    )
    with pytest.raises(AwsError) as caught:
        verify_v2(req, lambda akid: None)
    assert (caught.value.code, caught.value.status) == ("InvalidAccessKeyId", 403)
    assert caught.value.message == (
        "The AWS Access Key Id you provided does not exist in our records."
    )
    query = sign("GET", ODD_KEY_URL, expires=60)
    with pytest.raises(AwsError) as caught:
        verify_v2(query, lambda akid: None)
    assert caught.value.code == "InvalidAccessKeyId"
    # A signature that only differs in case, or carries non-ASCII, does not match.
    signature = req.headers["authorization"].rpartition(":")[2]
    for bad in (signature.swapcase(), signature + "é"):
        tampered = with_headers(req, authorization=f"AWS {AKID}:{bad}")
        assert error_of(tampered).code == "SignatureDoesNotMatch"


def test_clock_skew() -> None:
    req = sign("GET", ODD_KEY_URL)
    at = signed_at(req)
    for delta in (timedelta(minutes=14), timedelta(minutes=-14), timedelta(0)):
        assert verify_v2(req, lookup, now=at + delta).credential == CRED
    assert verify_v2(req, lookup, now=at.replace(tzinfo=None)).credential == CRED
    for delta in (timedelta(minutes=16), timedelta(minutes=-16), timedelta(days=3)):
        err = error_of(req, now=at + delta)
        assert (err.code, err.status) == ("RequestTimeTooSkewed", 403)
        assert err.message == (
            "The difference between the request time and the current time is too large."
        )
    undated = RequestView(
        req.method, req.raw_path, "", {k: v for k, v in req.headers.items() if k != "date"}
    )
    err = error_of(undated)
    assert (err.code, err.status) == ("AccessDenied", 403)
    # Query auth has no skew, only its expiry: a week-long URL is good for a week.
    week = sign("GET", ODD_KEY_URL, expires=7 * 86400)
    assert verify_v2(week, lookup, now=datetime.now(UTC) + timedelta(days=6)).presigned


def test_malformed_and_mixed_auth() -> None:
    req = sign("GET", ODD_KEY_URL)
    for header in ("AWS", "AWS ", f"AWS {AKID}", f"AWS {AKID}:", "AWS :c2ln"):
        malformed = with_headers(req, authorization=header)
        with pytest.raises(AwsError) as caught:
            parse_auth_v2(malformed)
        assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400), header
        assert error_of(malformed).code == "InvalidArgument"
    query = sign("GET", ODD_KEY_URL, expires=60)
    params = query.query_string.split("&")
    for name in ("Expires", "Signature", "AWSAccessKeyId"):
        partial = "&".join(p for p in params if not p.startswith(f"{name}="))
        err = error_of(changed(query, query_string=partial))
        assert (err.code, err.status) == ("AccessDenied", 403), name
    bad_expiry = query.query_string.replace("Expires=", "Expires=x")
    assert error_of(changed(query, query_string=bad_expiry)).code == "InvalidArgument"
    # Header and query auth at once.
    both = with_headers(query, authorization=req.headers["authorization"])
    assert error_of(both).code == "InvalidArgument"
    # Neither: anonymous, or SigV4 (which is not SigV2's to judge).
    anonymous = RequestView("GET", "/bucket/k", "prefix=AWSAccessKeyId", {"host": "h"})
    assert parse_auth_v2(anonymous) is None
    assert error_of(anonymous).code == "AccessDenied"
    sigv4 = with_headers(req, authorization="AWS4-HMAC-SHA256 Credential=x")
    assert parse_auth_v2(sigv4) is None
    v4_query = RequestView("GET", "/b/k", "X-Amz-Algorithm=AWS4-HMAC-SHA256&Signature=x", {})
    assert parse_auth_v2(v4_query) is None


# AWS's SigV2 documentation examples (key AKIAIOSFODNN7EXAMPLE), johnsmith's bucket. Its
# DELETE and ?delete examples print wrong signatures; these are the ones their printed
# strings to sign give (goamz found the same).
AWS_CRED = Credential(
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "example", "1"
)
AWS_EXAMPLES = [
    # (method, bucket from the Host, path?query, headers, date, signature)
    ("GET", "johnsmith", "/photos/puppy.jpg", {}, "Tue, 27 Mar 2007 19:36:42 +0000",
     "bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
    ("PUT", "johnsmith", "/photos/puppy.jpg",
     {"content-type": "image/jpeg", "content-length": "94328"},
     "Tue, 27 Mar 2007 21:15:45 +0000", "MyyxeRY7whkBe+bq8fHCL/2kKUg="),
    ("GET", "johnsmith", "/?prefix=photos&max-keys=50&marker=puppy",
     {"user-agent": "Mozilla/5.0"}, "Tue, 27 Mar 2007 19:42:41 +0000",
     "htDYFYduRNen8P9ZfE/s9SuKy0U="),
    ("GET", "johnsmith", "/?acl", {}, "Tue, 27 Mar 2007 19:44:46 +0000",
     "c2WLPFtWHVgbEmeEG93a4cG37dM="),
    ("DELETE", None, "/johnsmith/photos/puppy.jpg",
     {"user-agent": "dotnet", "x-amz-date": "Tue, 27 Mar 2007 21:20:26 +0000"},
     "Tue, 27 Mar 2007 21:20:27 +0000", "R4dJ53KECjStyBO5iTBJZ4XVOaI="),
    ("PUT", "static.johnsmith.net", "/db-backup.dat.gz",
     {"x-amz-acl": "public-read", "content-type": "application/x-download",
      "content-md5": "4gJE4saaMU4BqNR0kLY+lw==",
      "x-amz-meta-reviewedby": "joe@johnsmith.net,jane@johnsmith.net",
      "x-amz-meta-filechecksum": "0x02661779", "x-amz-meta-checksumalgorithm": "crc32",
      "content-disposition": "attachment; filename=database.dat",
      "content-encoding": "gzip", "content-length": "5913339"},
     "Tue, 27 Mar 2007 21:06:08 +0000", "ilyl83RwaSoYIEdixDQcA4OnAnc="),
    ("GET", None, "/", {}, "Wed, 28 Mar 2007 01:29:59 +0000", "qGdzdERIC03wnaRNKh6OqZehG9s="),
    ("GET", None, "/dictionary/fran%C3%A7ais/pr%C3%A9f%C3%A8re", {},
     "Wed, 28 Mar 2007 01:49:49 +0000", "81VEw/Bc3GDt/k65Xrrk3AdfI4c="),
    ("POST", "bucketname", "/?delete",
     {"x-amz-date": "Wed, 30 Nov 2011 03:39:05 GMT", "content-md5": "p5/WA/oEr30qrEEl21PAqw=="},
     None, "DXGmXMY+1QnRGC7vicUqu1gTmK4="),
]  # fmt: skip


@pytest.mark.parametrize("example", AWS_EXAMPLES, ids=lambda e: f"{e[0]} {e[2]}")
def test_aws_documentation_examples(example: tuple[object, ...]) -> None:
    method, bucket, target, extra, date, signature = example
    assert isinstance(target, str) and isinstance(extra, dict)
    path, _, query = target.partition("?")
    headers = {"host": "s3.amazonaws.com", **extra}
    if date is not None:
        headers["date"] = str(date)
    headers["authorization"] = f"AWS AKIAIOSFODNN7EXAMPLE:{signature}"
    req = RequestView(str(method), path, query, headers)
    now = parsedate_to_datetime(headers.get("x-amz-date", headers.get("date", "")))
    aws_lookup = {AWS_CRED.access_key_id: AWS_CRED}.get
    ctx = verify_v2(req, aws_lookup, bucket=bucket if isinstance(bucket, str) else None, now=now)
    assert ctx.credential == AWS_CRED and not ctx.presigned


def test_aws_documentation_query_example() -> None:
    req = RequestView(
        "GET", "/photos/puppy.jpg",
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
        "&Expires=1175139620",
        {"host": "johnsmith.s3.amazonaws.com"},
    )  # fmt: skip
    aws_lookup = {AWS_CRED.access_key_id: AWS_CRED}.get
    before = datetime(2007, 3, 29, tzinfo=UTC)
    ctx = verify_v2(req, aws_lookup, bucket="johnsmith", now=before)
    assert ctx.presigned and ctx.signature == "NpgCjnDzrM+WFzoENXmpNDUsSn8="
    assert error_of(req, bucket="johnsmith").code == "InvalidAccessKeyId"  # not our key
    expired = pytest.raises(AwsError)
    with expired as caught:
        verify_v2(req, aws_lookup, bucket="johnsmith")
    assert caught.value.message == "Request has expired"
