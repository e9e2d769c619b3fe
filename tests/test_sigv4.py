"""SigV4 verification against botocore's own signers and AWS's published examples."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kobako.protocol import sigv4
from kobako.protocol.errors import AwsError
from kobako.protocol.sigv4 import (
    AuthContext,
    Credential,
    RequestView,
    parse_auth,
    verify,
)
from sig_helpers import AKID, CRED, SECRET, lookup, view_prepared, with_headers


def sign(
    signer: type[SigV4Auth],
    service: str,
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    secret: str = SECRET,
    **kwargs: int,
) -> RequestView:
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {}, params=params)
    signer(Credentials(AKID, secret), service, "us-east-1", **kwargs).add_auth(request)
    return view_prepared(request.prepare())


def error_of(req: RequestView, **kwargs: object) -> AwsError:
    with pytest.raises(AwsError) as caught:
        verify(req, lookup, **kwargs)  # type: ignore[arg-type]
    return caught.value


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


S3_URL = "https://s3.us-east-1.amazonaws.com/bucket/some%20dir/k%C3%BCy%2Bplus~%3A.txt"


def test_s3_header_auth_get_with_odd_path_and_query() -> None:
    req = sign(
        S3SigV4Auth, "s3", "GET", S3_URL,
        params={"prefix": "a b+c/ü", "list-type": "2", "empty": "", "tilde~": "x*y"},
    )  # fmt: skip
    assert "+" in req.query_string  # botocore sends its params form-encoded
    ctx = verify(req, lookup)
    assert isinstance(ctx, AuthContext)
    assert (ctx.service, ctx.region, ctx.presigned) == ("s3", "us-east-1", False)
    assert ctx.payload_hash == sha(b"")
    assert ctx.credential == CRED
    assert ctx.scope == f"{ctx.amz_date[:8]}/us-east-1/s3/aws4_request"
    assert parse_auth(req) == (AKID, "s3", "us-east-1")
    # The signing key is a secret: never shown, and the context cannot be changed.
    assert repr(ctx.signing_key) not in repr(ctx) and str(ctx) == repr(ctx)
    assert repr(ctx).startswith("AuthContext(credential=Credential(access_key_id=")
    with pytest.raises(AttributeError):
        ctx.signature = "forged"  # type: ignore[misc]


def test_s3_put_with_signed_body_and_its_mutations() -> None:
    body = b"hello kobako" * 100
    req = sign(
        S3SigV4Auth, "s3", "PUT", "http://localhost:4566/bucket/key",
        body=body, headers={"x-amz-meta-colour": "  blue   and  green ", "Content-Type": "a/b"},
    )  # fmt: skip
    assert req.headers["x-amz-content-sha256"] == sha(body)
    assert verify(req, lookup).payload_hash == sha(body)
    # The caller's own hash of the body must agree with the header.
    assert verify(req, lookup, payload_hash=sha(body)).payload_hash == sha(body)
    assert error_of(req, payload_hash=sha(b"other")).code == "XAmzContentSHA256Mismatch"
    # A header the client signed, changed in transit.
    assert error_of(with_headers(req, x_amz_meta_colour="red")).code == "SignatureDoesNotMatch"
    # Whitespace inside a signed value is canonicalized, so re-spacing is not a change.
    respaced = with_headers(req, x_amz_meta_colour="blue and   green")
    assert verify(respaced, lookup).credential == CRED
    # The body hash header changed (to match a different body).
    forged = with_headers(req, x_amz_content_sha256=sha(b"evil"))
    assert error_of(forged).code == "SignatureDoesNotMatch"
    # Headers the client did not sign may be added freely.
    assert verify(with_headers(req, x_forwarded_for="1.2.3.4"), lookup).service == "s3"
    # Path, method and query are covered.
    moved = RequestView(req.method, "/bucket/other", req.query_string, req.headers)
    assert error_of(moved).code == "SignatureDoesNotMatch"
    assert error_of(RequestView("POST", req.raw_path, "", req.headers)).code == (
        "SignatureDoesNotMatch"
    )
    extra = RequestView(req.method, req.raw_path, "versionId=1", req.headers)
    assert error_of(extra).code == "SignatureDoesNotMatch"


def test_wrong_secret_and_unknown_key() -> None:
    req = sign(S3SigV4Auth, "s3", "GET", S3_URL, secret="not-the-secret")
    err = error_of(req)
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)
    assert err.message.startswith("The request signature we calculated does not match")
    assert "CanonicalRequest" in err.fields and "StringToSign" in err.fields

    good = sign(S3SigV4Auth, "s3", "GET", S3_URL)
    with pytest.raises(AwsError) as caught:
        verify(good, lambda akid: None)
    assert (caught.value.code, caught.value.status) == ("InvalidAccessKeyId", 403)
    assert caught.value.message == (
        "The AWS Access Key Id you provided does not exist in our records."
    )


def test_clock_skew() -> None:
    req = sign(S3SigV4Auth, "s3", "GET", S3_URL)
    signed_at = datetime.strptime(req.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert verify(req, lookup, now=signed_at + timedelta(minutes=14)).service == "s3"
    assert verify(req, lookup, now=signed_at - timedelta(minutes=14)).service == "s3"
    for delta in (timedelta(minutes=16), timedelta(minutes=-16), timedelta(days=3)):
        err = error_of(req, now=signed_at + delta)
        assert (err.code, err.status) == ("RequestTimeTooSkewed", 403)
    # A naive `now` is taken as UTC.
    assert verify(req, lookup, now=signed_at.replace(tzinfo=None)).service == "s3"


def test_date_header_instead_of_x_amz_date() -> None:
    req = sign(
        SigV4Auth, "sqs", "POST", "https://sqs.us-east-1.amazonaws.com/",
        body=b"Action=ListQueues", headers={"Date": "placeholder"},
    )  # fmt: skip
    assert "x-amz-date" not in req.headers and "date" in req.headers["authorization"]
    assert verify(req, lookup, payload_hash=sha(b"Action=ListQueues")).service == "sqs"
    undated = RequestView(
        req.method, req.raw_path, req.query_string,
        {k: v for k, v in req.headers.items() if k != "date"},
    )  # fmt: skip
    err = error_of(undated, payload_hash=sha(b"Action=ListQueues"))
    assert (err.code, err.status) == ("AccessDenied", 403)
    assert "Date" in err.message


def test_non_s3_service_double_encodes_and_normalizes_the_path() -> None:
    url = (
        "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/"
        "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy%20fn/./x/../invocations"
    )
    body = b'{"hello": "world"}'
    req = sign(SigV4Auth, "lambda", "POST", url, body=body, params={"Qualifier": "$LATEST"})
    assert "x-amz-content-sha256" not in req.headers
    ctx = verify(req, lookup, payload_hash=sha(body))
    assert (ctx.service, ctx.payload_hash) == ("lambda", sha(body))
    # Non-S3 services need the caller's body hash...
    err = error_of(req)
    assert (err.code, err.status) == ("InvalidRequest", 400)
    # ...and a different body does not verify.
    assert error_of(req, payload_hash=sha(b"{}")).code == "SignatureDoesNotMatch"
    # Signing the path as S3 would (not double-encoded) must not verify as lambda.
    single = RequestView(req.method, req.raw_path.replace("%3A", ":"), req.query_string,
                         req.headers)  # fmt: skip
    assert error_of(single, payload_hash=sha(body)).code == "SignatureDoesNotMatch"


def test_s3_path_is_not_normalized() -> None:
    url = "https://s3.us-east-1.amazonaws.com/bucket/a/./b/../c//d"
    req = sign(S3SigV4Auth, "s3", "GET", url)
    assert req.raw_path == "/bucket/a/./b/../c//d"
    assert verify(req, lookup).service == "s3"
    normalized = RequestView(req.method, "/bucket/a/c/d", req.query_string, req.headers)
    assert error_of(normalized).code == "SignatureDoesNotMatch"


def test_s3_presigned_url() -> None:
    req = sign(
        S3SigV4QueryAuth, "s3", "GET", S3_URL,
        params={"response-content-type": "text/plain; charset=utf-8"}, expires=3600,
    )  # fmt: skip
    assert "authorization" not in req.headers
    assert parse_auth(req) == (AKID, "s3", "us-east-1")
    ctx = verify(req, lookup)
    assert ctx.presigned and ctx.payload_hash == "UNSIGNED-PAYLOAD"
    signed_at = datetime.strptime(ctx.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert verify(req, lookup, now=signed_at + timedelta(seconds=3599)).presigned
    err = error_of(req, now=signed_at + timedelta(seconds=3601))
    assert (err.code, err.status, err.message) == ("AccessDenied", 403, "Request has expired")
    # Any query parameter is covered, and so is the expiry itself.
    tampered = RequestView(
        req.method,
        req.raw_path,
        req.query_string.replace("text%2Fplain", "text%2Fhtml"),
        req.headers,
    )
    assert error_of(tampered).code == "SignatureDoesNotMatch"
    longer = RequestView(req.method, req.raw_path,
                         req.query_string.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200"),
                         req.headers)  # fmt: skip
    assert error_of(longer).code == "SignatureDoesNotMatch"
    # The body of a presigned request is not covered, so no payload hash is needed.
    assert verify(with_headers(req, content_length="5"), lookup).presigned


def test_s3_presigned_put_with_signed_header() -> None:
    req = sign(
        S3SigV4QueryAuth, "s3", "PUT", "https://s3.us-east-1.amazonaws.com/bucket/key",
        headers={"x-amz-meta-owner": "me"}, expires=60,
    )  # fmt: skip
    assert verify(req, lookup).presigned
    assert error_of(with_headers(req, x_amz_meta_owner="you")).code == "SignatureDoesNotMatch"


def test_non_s3_presigned_url_signs_the_body_hash() -> None:
    req = sign(
        SigV4QueryAuth, "sts", "GET", "https://sts.amazonaws.com/",
        params={"Action": "GetCallerIdentity", "Version": "2011-06-15"}, expires=60,
    )  # fmt: skip
    ctx = verify(req, lookup, payload_hash=sha(b""))
    assert ctx.presigned and ctx.service == "sts" and ctx.payload_hash == sha(b"")
    assert error_of(req).code == "SignatureDoesNotMatch"  # without the body hash


def test_presigned_parameter_errors() -> None:
    req = sign(S3SigV4QueryAuth, "s3", "GET", S3_URL, expires=60)
    query = req.query_string

    def query_error(new_query: str) -> AwsError:
        return error_of(RequestView(req.method, req.raw_path, new_query, req.headers))

    no_signature = "&".join(p for p in query.split("&") if not p.startswith("X-Amz-Signature="))
    err = query_error(no_signature)
    assert (err.code, err.status) == ("AuthorizationQueryParametersError", 400)
    for bad in ("0", "604801", "-1", "abc"):
        err = query_error(query.replace("X-Amz-Expires=60", f"X-Amz-Expires={bad}"))
        assert err.code == "AuthorizationQueryParametersError", bad
    err = query_error(query.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=MD5"))
    assert (err.code, err.status) == ("InvalidArgument", 400)
    err = query_error(query.replace("%2Faws4_request", "%2Fnope"))
    assert err.code == "AuthorizationQueryParametersError"
    # Both mechanisms at once is refused.
    both = with_headers(req, authorization="AWS4-HMAC-SHA256 Credential=x")
    assert error_of(both).code == "InvalidArgument"


def test_malformed_authorization_header() -> None:
    req = sign(S3SigV4Auth, "s3", "GET", S3_URL)
    auth = req.headers["authorization"]
    cases = {
        "AWS4-HMAC-SHA256 Credential=abc": "AuthorizationHeaderMalformed",
        auth.replace("/aws4_request", "/aws5_request"): "AuthorizationHeaderMalformed",
        auth.replace(", SignedHeaders=", ", Headers="): "AuthorizationHeaderMalformed",
        auth.replace("Signature=", "Signature"): "AuthorizationHeaderMalformed",
        auth.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"): "InvalidArgument",
    }
    for header, code in cases.items():
        err = error_of(with_headers(req, authorization=header))
        assert (err.code, err.status) == (code, 400), header
        with pytest.raises(AwsError):
            parse_auth(with_headers(req, authorization=header))
    # A credential date other than the request's date.
    other_day = auth.replace(f"/{req.headers['x-amz-date'][:8]}/", "/20000101/")
    assert error_of(with_headers(req, authorization=other_day)).code == (
        "AuthorizationHeaderMalformed"
    )
    # A garbage x-amz-content-sha256 is refused before anything is signed over it.
    assert error_of(with_headers(req, x_amz_content_sha256="nope")).code == "InvalidArgument"


def outcome(req: RequestView) -> object:
    """What verify makes of a request: the signature it accepted, or the error."""
    try:
        return verify(req, lookup).signature
    except AwsError as err:
        return (err.code, err.message)


def test_common_authorization_header_fast_path_agrees_with_the_general_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one-regex match for the header SDKs send takes exactly what the general parser
    takes, and every header, near-miss or not, is answered as with no fast path."""
    req = sign(S3SigV4Auth, "s3", "GET", S3_URL)
    auth = req.headers["authorization"]
    signature = auth.rpartition("Signature=")[2]
    headers = [
        auth,
        auth + " ",  # trailing whitespace, which the general parser strips
        auth + "\u00a0",
        " " + auth,
        auth.replace("Credential=", "Credential= "),  # kept by the general parser too
        auth.replace(", SignedHeaders", " , SignedHeaders"),
        auth.replace(", SignedHeaders", ",SignedHeaders"),
        auth.replace(", SignedHeaders", ",  SignedHeaders"),
        auth.replace("/aws4_request,", "/aws4_request\u2003,"),
        auth.replace(";x-amz-date", ";x-amz-date\t"),
        auth + ",",
        auth + ", Extra=1",
        auth.replace(signature, signature + ",x"),
        auth.replace(signature, signature + "=="),
        auth.replace(signature, "a b"),  # inner whitespace: kept by both parsers
        auth.replace(signature, ""),
        auth.replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256  "),
        auth.replace("Credential=", "Credential=Credential="),
    ]
    matched = []
    for header in headers:
        common = sigv4._COMMON_HEADER.fullmatch(header)
        if common is not None:
            matched.append(header)
            assert common.groups() == sigv4._header_parts(header), header
    # The header, and the four near-misses whose values hold no comma and end in no space.
    assert len(matched) == 5
    fast = [outcome(with_headers(req, authorization=header)) for header in headers]
    monkeypatch.setattr(sigv4, "_COMMON_HEADER", re.compile("(?!)"))  # never matches
    general = [outcome(with_headers(req, authorization=header)) for header in headers]
    assert fast == general
    assert fast[:3] == [signature] * 3  # stripped whitespace still verifies


def test_sigv2_is_left_to_sigv2() -> None:
    """SigV2 auth, header or query, is not SigV4's: parse_auth passes it on as None (for
    kobako.protocol.sigv2), and verify never accepts it as SigV4."""
    req = sign(S3SigV4Auth, "s3", "GET", S3_URL)
    v2_header = with_headers(req, authorization=f"AWS {AKID}:c2lnbmF0dXJl")
    v2_query = RequestView(
        "GET", "/bucket/key", f"AWSAccessKeyId={AKID}&Expires=1&Signature=c2ln%2B", {"host": "h"}
    )
    for v2 in (v2_header, v2_query):
        assert parse_auth(v2) is None
        err = error_of(v2)
        assert (err.code, err.status) == ("AccessDenied", 403)
    # A SigV2 header beside SigV4 query auth is still refused as two mechanisms.
    presigned = sign(S3SigV4QueryAuth, "s3", "GET", S3_URL, expires=60)
    mixed = with_headers(presigned, authorization=f"AWS {AKID}:c2lnbmF0dXJl")
    assert error_of(mixed).code == "InvalidArgument"
    # Other schemes are still refused outright, not passed on.
    with pytest.raises(AwsError):
        parse_auth(with_headers(req, authorization="AWS5 x"))


def test_anonymous_requests() -> None:
    anonymous = RequestView("GET", "/bucket/key", "prefix=X-Amz-Credential%3D", {"host": "h"})
    assert parse_auth(anonymous) is None
    err = error_of(anonymous)
    assert (err.code, err.status) == ("AccessDenied", 403)


# AWS's published streaming examples: PUT /examplebucket/chunkObject.txt, 66560 bytes of
# 'a' in a 65536-byte chunk, a 1024-byte chunk and the empty final chunk.
AWS_CRED = Credential(
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "example", "1"
)
AWS_NOW = datetime(2013, 5, 24, 0, 1, tzinfo=UTC)
AWS_HEADERS = {
    "host": "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
}


def aws_example(trailer: bool) -> RequestView:
    headers = dict(AWS_HEADERS)
    if trailer:
        signed = "content-encoding;host;x-amz-content-sha256;x-amz-date;"
        signed += "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer"
        seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
        headers["x-amz-content-sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
        headers["x-amz-trailer"] = "x-amz-checksum-crc32c"
    else:
        signed = "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        signed += "x-amz-decoded-content-length;x-amz-storage-class"
        seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
        headers["x-amz-content-sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        headers["content-length"] = "66824"
    headers["authorization"] = (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={signed},Signature={seed}"
    )
    return RequestView("PUT", "/examplebucket/chunkObject.txt", "", headers)


def aws_example_context(trailer: bool) -> AuthContext:
    return verify(aws_example(trailer), {AWS_CRED.access_key_id: AWS_CRED}.get, now=AWS_NOW)


def test_aws_streaming_example_seed_and_chunk_signatures() -> None:
    ctx = aws_example_context(trailer=False)
    assert ctx.signature == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    assert ctx.payload_hash == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    assert ctx.scope == "20130524/us-east-1/s3/aws4_request"
    signer = ctx.chunk_verifier()
    expected = [
        (65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
        (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
        (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
    ]
    for size, signature in expected:
        assert signer.chunk_signature(sha(b"a" * size)) == signature
        signer.verify_chunk(signature, sha(b"a" * size))
    # Out of order (the chain moved on), the same signature no longer verifies.
    with pytest.raises(AwsError) as caught:
        signer.verify_chunk(expected[2][1], sha(b""))
    assert (caught.value.code, caught.value.status) == ("SignatureDoesNotMatch", 403)
    # The example's declared content length is signed.
    changed = with_headers(aws_example(False), content_length="66825")
    with pytest.raises(AwsError):
        verify(changed, {AWS_CRED.access_key_id: AWS_CRED}.get, now=AWS_NOW)


def test_aws_streaming_trailer_example() -> None:
    ctx = aws_example_context(trailer=True)
    signer = ctx.chunk_verifier()
    for size, signature in [
        (65536, "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"),
        (1024, "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"),
        (0, "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"),
    ]:
        signer.verify_chunk(signature, sha(b"a" * size))
    trailer_signature = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
    with pytest.raises(AwsError):
        signer.verify_trailer(trailer_signature, b"x-amz-checksum-crc32c:AAAAAA==\n")
    signer.verify_trailer(trailer_signature, b"x-amz-checksum-crc32c:sOO8/Q==\n")
