"""Server-side verification of AWS Signature Version 2, which only S3 accepts.

boto3's presigned S3 URLs default to SigV2 query auth (`?AWSAccessKeyId=&Signature=&
Expires=`), and older S3 clients sign headers with `Authorization: AWS key:signature`.
The string to sign is rebuilt as botocore's `HmacV1Auth` and `HmacV1QueryAuth` build it:
the raw path as sent, plus the sub-resources of `SUB_RESOURCES` from the query. Presigned
URLs carry their x-amz-* headers as query parameters; Content-Type and Content-MD5 are
always read from the request's headers, as S3 reads them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import NamedTuple
from urllib.parse import unquote

from kobako.protocol.errors import AwsError
from kobako.protocol.sigv4 import (
    MAX_SKEW,
    UNSIGNED_PAYLOAD,
    AuthContext,
    Credential,
    RequestView,
)

# botocore.auth.HmacV1Auth.QSAOfInterest: the query parameters the resource covers.
SUB_RESOURCES = frozenset(
    {
        "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging",
        "partNumber", "policy", "requestPayment", "torrent", "versioning", "versionId",
        "versions", "website", "uploads", "uploadId", "response-content-type",
        "response-content-language", "response-expires", "response-cache-control",
        "response-content-disposition", "response-content-encoding", "delete",
        "lifecycle", "tagging", "restore", "storageClass", "notification", "replication",
        "analytics", "metrics", "inventory", "select", "select-type", "object-lock",
    }
)  # fmt: skip
_QUERY_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")
_SIGV4_QUERY = ("X-Amz-Algorithm", "X-Amz-Credential")


def parse_auth_v2(req: RequestView) -> str | None:
    """The access key id of a SigV2-signed request, or None when it is not one.

    Only parses. Auth that is SigV2 but malformed raises rather than passing as anonymous.
    """
    claim = _claim(req)
    return None if claim is None else claim.access_key_id


def verify_v2(
    req: RequestView,
    lookup: Callable[[str], Credential | None],
    *,
    bucket: str | None = None,
    now: datetime | None = None,
) -> AuthContext:
    """Verify the request's SigV2 signature (header or query) or raise AwsError.

    `bucket` is the bucket a virtual-hosted request names in its Host: the signed
    resource is then `/bucket` + the path, as botocore's `auth_path`.
    """
    claim = _claim(req)
    if claim is None:
        raise AwsError("AccessDenied", "The request is not signed.", 403)
    akid, signature = claim.access_key_id, claim.signature
    credential = lookup(akid)
    if credential is None:
        raise AwsError(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            403,
            fields={"AWSAccessKeyId": akid},
        )
    now = datetime.now(UTC) if now is None else _utc(now)
    if claim.presigned:
        _check_expiry(claim.expires, now)
        date = claim.expires
    else:
        date = "" if "x-amz-date" in req.headers else req.headers.get("date", "").strip()
        _check_skew(req.headers, now)
    head = _string_to_sign_head(req, date, claim.presigned)
    candidates = [head + resource for resource in _resources(req, bucket)]
    key = credential.secret_access_key.encode()
    if not any(_same(_hmac_b64(key, string), signature) for string in candidates):
        string_to_sign = candidates[0]
        raise AwsError(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            403,
            fields={
                "AWSAccessKeyId": akid,
                "StringToSign": string_to_sign,
                "SignatureProvided": signature,
                "StringToSignBytes": string_to_sign.encode().hex(" "),
            },
        )
    return AuthContext(
        credential=credential,
        service="s3",
        region="us-east-1",
        amz_date="",
        scope="",
        signature=signature,
        signing_key=b"",
        presigned=claim.presigned,
        payload_hash=UNSIGNED_PAYLOAD,
    )


class _Claim(NamedTuple):
    """What a request says about its own signature, before any of it is checked."""

    access_key_id: str
    signature: str
    presigned: bool
    expires: str = ""


def _claim(req: RequestView) -> _Claim | None:
    params = _query_params(req.query_string)
    in_query = any(name in ("AWSAccessKeyId", "Signature") for name, _ in params)
    header = req.headers.get("authorization")
    if header is not None:
        scheme, _, rest = header.strip().partition(" ")
        if scheme != "AWS":
            return None  # SigV4, or a scheme sigv4.parse_auth refuses
        if in_query:
            raise AwsError(
                "InvalidArgument",
                "Only one auth mechanism allowed; only the Signature query parameter "
                "or the Authorization header should be specified",
            )
        akid, colon, signature = rest.strip().partition(":")
        if not (akid and colon and signature):
            raise AwsError(
                "InvalidArgument",
                "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            )
        return _Claim(akid, signature, presigned=False)
    if not in_query or any(name in _SIGV4_QUERY for name, _ in params):
        return None  # anonymous, or SigV4 query auth
    values = {name: unquote(value) for name, value in params if name in _QUERY_PARAMS}
    if not all(values.get(name) for name in _QUERY_PARAMS):
        raise AwsError(
            "AccessDenied",
            "Query-string authentication requires the Signature, Expires and "
            "AWSAccessKeyId parameters",
            403,
        )
    return _Claim(values["AWSAccessKeyId"], values["Signature"], True, values["Expires"])


def _string_to_sign_head(req: RequestView, date: str, query_auth: bool) -> str:
    """Everything the string to sign holds before the resource."""
    headers = req.headers
    amz: dict[str, str] = {
        name: value.strip() for name, value in headers.items() if name.startswith("x-amz-")
    }
    if query_auth:  # presigned URLs carry their x-amz-* headers (security token) as params
        joined: dict[str, list[str]] = {}
        for name, value in _query_params(req.query_string):
            if name.lower().startswith("x-amz-"):
                joined.setdefault(name.lower(), []).append(unquote(value).strip())
        amz.update((name, ",".join(values)) for name, values in joined.items())
    return "".join(
        (
            f"{req.method.upper()}\n",
            f"{headers.get('content-md5', '').strip()}\n",
            f"{headers.get('content-type', '').strip()}\n",
            f"{date}\n",
            "".join(f"{name}:{amz[name]}\n" for name in sorted(amz)),
        )
    )


def _resources(req: RequestView, bucket: str | None) -> list[str]:
    """botocore's `HmacV1Auth.canonical_resource`: the path as sent, then the
    sub-resources by name (stably), values percent-decoded, bare names kept bare.

    botocore signs a path-style bucket-only path ('/bucket') as '/bucket/' (its
    `authPath`), as AWS does; the path exactly as sent is the second candidate.
    """
    path = req.raw_path or "/"
    paths = [path]
    if bucket:
        paths = [f"/{bucket}{path}"]
    elif path.count("/") == 1 and len(path) > 1:
        paths = [path + "/", path]
    query = req.query_string
    pairs = [piece.split("=", 1) for piece in query.split("&")] if query else []
    picked = [p if len(p) == 1 else [p[0], unquote(p[1])] for p in pairs if p[0] in SUB_RESOURCES]
    picked.sort(key=lambda p: p[0])
    sub = "?" + "&".join("=".join(p) for p in picked) if picked else ""
    return [path + sub for path in paths]


def _hmac_b64(key: bytes, message: str) -> str:
    return base64.b64encode(hmac.new(key, message.encode(), hashlib.sha1).digest()).decode()


def _same(expected: str, provided: str) -> bool:
    # Bytes, because compare_digest refuses non-ASCII str and a client may send anything.
    return hmac.compare_digest(expected.encode(), provided.encode())


def _check_expiry(expires: str, now: datetime) -> None:
    if not (expires.isascii() and expires.isdigit()):
        raise AwsError("InvalidArgument", f"Invalid Expires value: {expires!r}.")
    if now.timestamp() > int(expires):
        raise AwsError(
            "AccessDenied",
            "Request has expired",
            403,
            fields={
                "Expires": _iso(datetime.fromtimestamp(min(int(expires), 253402300799), UTC)),
                "ServerTime": _iso(now),
            },
        )


def _check_skew(headers: Mapping[str, str], now: datetime) -> None:
    """The request time is x-amz-date if present, else Date; 15 minutes either way."""
    raw = headers.get("x-amz-date", headers.get("date", "")).strip()
    signed_at = _parse_date(raw)
    if signed_at is None:
        raise AwsError(
            "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header", 403
        )
    if abs(now - signed_at) > MAX_SKEW:
        raise AwsError(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            403,
            fields={
                "RequestTime": raw,
                "ServerTime": _iso(now),
                "MaxAllowedSkewMilliseconds": "900000",
            },
        )


def _parse_date(value: str) -> datetime | None:
    with suppress(TypeError, ValueError, IndexError):
        return _utc(parsedate_to_datetime(value))
    with suppress(ValueError):
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return None


def _query_params(query: str) -> list[tuple[str, str]]:
    """Raw (still encoded) name/value pairs; a bare name gets an empty value."""
    return [
        (name, value)
        for name, _, value in (piece.partition("=") for piece in query.split("&") if piece)
    ]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
