"""Server-side verification of AWS Signature Version 4.

Every client kobako serves (boto3, the aws CLI, the other SDKs) signs its requests with
SigV4, either in the `Authorization` header or in the query string of a presigned URL.
This module rebuilds the canonical request exactly as botocore does
(`botocore.auth.SigV4Auth`, `S3SigV4Auth`, `SigV4QueryAuth`, `S3SigV4QueryAuth`), so
that anything a real client signs verifies, and anything altered in transit does not.
It also verifies the chained chunk signatures of `aws-chunked` uploads (`ChunkSigner`);
the body framing itself lives in `kobako.protocol.chunked`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import NamedTuple, NoReturn
from urllib.parse import quote, unquote, unquote_to_bytes

from kobako.protocol.errors import AwsError

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
PAYLOAD_TOKENS = frozenset(
    {UNSIGNED_PAYLOAD, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER}
)
MAX_SKEW = timedelta(minutes=15)
MAX_EXPIRES = 604800  # a week, AWS's limit for presigned URLs

# Services botocore signs with the S3 signers: the path is signed as sent, not normalized
# and not encoded a second time.
_S3_SERVICES = frozenset({"s3", "s3-object-lambda"})
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z", re.ASCII)
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*", re.ASCII)
_CREDENTIAL_SHAPE = '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request"'
_QUERY_AUTH_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)


@dataclass(frozen=True)
class Credential:
    """An access key pair and whom it belongs to."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    display_name: str
    account_id: str


@dataclass(frozen=True)
class RequestView:
    """The parts of an HTTP request SigV4 covers, exactly as they came off the wire.

    `raw_path` is still percent-encoded and `query_string` is raw: re-encoding either
    before verification would break signatures. Header names are lower-case and
    repeated headers are already joined with ','.
    """

    method: str
    raw_path: str
    query_string: str
    headers: Mapping[str, str]
    # What has been parsed from this request already (its claimed signature), so that
    # routing and verification do not parse it again. Not part of the request.
    memo: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


class AuthContext(NamedTuple):
    """A verified request: who signed it and what is needed to check the rest of it.

    `scope` is the credential scope without the key id (date/region/service/aws4_request),
    the form the chunk and trailer strings to sign use. `payload_hash` is the value the
    signature covers: a hex SHA-256 the caller must still compare with the body it reads,
    or one of the UNSIGNED/STREAMING tokens.

    A NamedTuple: immutable like a frozen dataclass, made once a request at under half
    its cost (10k instructions fewer).
    """

    credential: Credential
    service: str
    region: str
    amz_date: str
    scope: str
    signature: str
    signing_key: bytes
    presigned: bool
    payload_hash: str

    def __repr__(self) -> str:
        """Every field but the signing key, which is a secret."""
        shown = (f"{name}={value!r}" for name, value in zip(self._fields, self, strict=True)
                 if name != "signing_key")
        return f"AuthContext({', '.join(shown)})"

    def chunk_verifier(self) -> ChunkSigner:
        """The verifier of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER) body, seeded
        with this request's signature."""
        return ChunkSigner(self.signing_key, self.amz_date, self.scope, self.signature)


class ChunkSigner:
    """Checks the signatures of an aws-chunked body, in order.

    Each chunk signature covers the previous one (the first covers the request's seed
    signature), so chunks can be neither altered, dropped nor reordered. Feed it every
    chunk, the final empty one included, then the trailer if there is one.
    """

    def __init__(self, signing_key: bytes, amz_date: str, scope: str, seed_signature: str):
        self._key = signing_key
        self._prefix = f"{amz_date}\n{scope}\n"
        self.previous = seed_signature

    def chunk_signature(self, chunk_sha256: str) -> str:
        """The signature expected for the next chunk, given the hex SHA-256 of its data."""
        return _hmac_hex(
            self._key,
            f"AWS4-HMAC-SHA256-PAYLOAD\n{self._prefix}{self.previous}\n"
            f"{EMPTY_SHA256}\n{chunk_sha256}",
        )

    def verify_chunk(self, signature: str, chunk_sha256: str) -> None:
        """Check the next chunk's signature and move the chain on to it."""
        _check_signature(self.chunk_signature(chunk_sha256), signature)
        self.previous = signature

    def trailer_signature(self, trailer: bytes) -> str:
        """The signature expected for the canonical trailer (`name:value\\n` lines)."""
        return _hmac_hex(
            self._key,
            f"AWS4-HMAC-SHA256-TRAILER\n{self._prefix}{self.previous}\n"
            f"{hashlib.sha256(trailer).hexdigest()}",
        )

    def verify_trailer(self, signature: str, trailer: bytes) -> None:
        """Check the trailer's signature, which chains on the final chunk's."""
        _check_signature(self.trailer_signature(trailer), signature)
        self.previous = signature


class _Claim(NamedTuple):
    """What a request says about its own signature, before any of it is checked.
    (A NamedTuple: immutable like a frozen dataclass, at a third of its cost to make.)"""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool
    amz_date: str = ""
    expires: int = 0

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_auth(req: RequestView) -> tuple[str, str, str] | None:
    """(access key id, service, region) the request claims, or None when anonymous.

    Only parses; nothing is verified. A request that carries auth but malformed auth
    raises rather than passing as anonymous.
    """
    claim = _claim(req)
    return None if claim is None else (claim.access_key_id, claim.service, claim.region)


def verify(
    req: RequestView,
    lookup: Callable[[str], Credential | None],
    *,
    payload_hash: str | None = None,
    now: datetime | None = None,
) -> AuthContext:
    """Verify the request's SigV4 signature (header or presigned) or raise AwsError.

    `payload_hash` is the hex SHA-256 of the body as the caller computed it. It is used
    when the request has no x-amz-content-sha256 header (every service but S3), and
    checked against that header when both are present.
    """
    claim = _claim(req)
    if claim is None:
        raise AwsError("AccessDenied", "The request is not signed.", 403)
    now = datetime.now(UTC) if now is None else _utc(now)
    s3 = claim.service in _S3_SERVICES
    amz_date = claim.amz_date if claim.presigned else _header_date(req.headers)
    if amz_date[:8] != claim.date:
        _malformed(
            claim.presigned,
            f'Invalid credential date "{claim.date}". '
            f'This date is not the same as X-Amz-Date: "{amz_date[:8]}".',
        )
    credential = lookup(claim.access_key_id)
    if credential is None:
        raise AwsError(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            403,
            fields={"AWSAccessKeyId": claim.access_key_id} if s3 else None,
        )
    _check_time(claim, amz_date, now, s3)
    candidates = _payload_candidates(req, claim, payload_hash, s3)
    key = _signing_key(credential.secret_access_key, claim.date, claim.region, claim.service)
    scope = claim.scope
    canonical = string_to_sign = ""
    for candidate in candidates:
        canonical = _canonical_request(req, claim, candidate, s3)
        string_to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        if _same(_hmac_hex(key, string_to_sign), claim.signature):
            return AuthContext(
                credential=credential,
                service=claim.service,
                region=claim.region,
                amz_date=amz_date,
                scope=scope,
                signature=claim.signature,
                signing_key=key,
                presigned=claim.presigned,
                payload_hash=candidate,
            )
    fields = None
    if s3:  # S3 shows what it signed, which is how clients debug a mismatch
        fields = {
            "AWSAccessKeyId": claim.access_key_id,
            "StringToSign": string_to_sign,
            "SignatureProvided": claim.signature,
            "CanonicalRequest": canonical,
        }
    raise _mismatch(fields)


# -- parsing what the request claims ---------------------------------------------------


_UNPARSED = object()  # no claim parsed yet (None is a parsed claim: no SigV4 auth)


def _claim(req: RequestView) -> _Claim | None:
    """The request's claim, parsed once per RequestView (a malformed one raises).
    A sentinel, not KeyError, for the first look: raising costs 3k instructions."""
    claim = req.memo.get("claim", _UNPARSED)
    if claim is _UNPARSED:
        claim = req.memo["claim"] = _parse_claim(req)
    return claim  # type: ignore[return-value]


def _parse_claim(req: RequestView) -> _Claim | None:
    header = req.headers.get("authorization")
    params = _query_params(req.query_string)
    presigned = False
    if params:  # most requests have no query: no set of no names (2k instructions)
        names = {name for name, _ in params}
        presigned = "X-Amz-Algorithm" in names or "X-Amz-Credential" in names
    if header is not None and presigned:
        raise AwsError(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter "
            "or the Authorization header should be specified",
        )
    if header is not None:
        if header.strip().partition(" ")[0] == "AWS":
            return None  # SigV2 ("AWS key:signature"): kobako.protocol.sigv2 verifies it
        return _header_claim(header)
    if presigned:
        return _query_claim(params)
    return None  # anonymous, or SigV2 query auth (AWSAccessKeyId, Signature, Expires)


# The Authorization header as every SDK writes it. When its values hold no comma (which
# separates components) and do not end in whitespace (which `_header_parts` strips), that
# parser finds exactly these three values, at almost three times the cost of this match
# (~10k of the ~135k instructions sigv4 takes per request).
_COMMON_HEADER = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^,]*[^\s,]), SignedHeaders=([^,]*[^\s,]), "
    r"Signature=([^,]*[^\s,])"
)


def _header_claim(header: str) -> _Claim:
    common = _COMMON_HEADER.fullmatch(header)
    credential, signed, signature = _header_parts(header) if common is None else common.groups()
    akid, date, region, service = _credential(credential, presigned=False)
    return _Claim(
        access_key_id=akid,
        date=date,
        region=region,
        service=service,
        signed_headers=_signed_headers(signed, presigned=False),
        signature=signature,
        presigned=False,
    )


def _header_parts(header: str) -> tuple[str, str, str]:
    """Credential, SignedHeaders and Signature of any SigV4 Authorization header (in any
    order, other components ignored), or raise for a malformed one."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _unsupported(f'the authorization mechanism "{algorithm}"')
    parts: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq or name in parts:
            _malformed(False, f'the authorization component "{part.strip()}" is malformed.')
        parts[name] = value
    missing = {"Credential", "SignedHeaders", "Signature"} - parts.keys()
    if missing:
        _malformed(False, f"missing {', '.join(sorted(missing))}.")
    return parts["Credential"], parts["SignedHeaders"], parts["Signature"]


def _query_claim(params: list[tuple[str, str]]) -> _Claim:
    values: dict[str, str] = {}
    for name, value in params:
        if name in _QUERY_AUTH_PARAMS:
            if name in values:
                _malformed(True, f"{name} must appear only once.")
            values[name] = unquote(value.replace("+", " "))
    if values.get("X-Amz-Algorithm", ALGORITHM) != ALGORITHM:
        raise _unsupported(f'X-Amz-Algorithm "{values["X-Amz-Algorithm"]}"')
    if len(values) != len(_QUERY_AUTH_PARAMS):
        _malformed(
            True,
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters.",
        )
    akid, date, region, service = _credential(values["X-Amz-Credential"], presigned=True)
    amz_date = values["X-Amz-Date"]
    if not _AMZ_DATE.fullmatch(amz_date) or _parse_amz_date(amz_date) is None:
        _malformed(True, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    expires = values["X-Amz-Expires"]
    if not expires.isascii() or not expires.isdigit():
        _malformed(True, "X-Amz-Expires should be a number")
    if not 1 <= int(expires) <= MAX_EXPIRES:
        _malformed(True, f"X-Amz-Expires must be between 1 and {MAX_EXPIRES} seconds")
    return _Claim(
        access_key_id=akid,
        date=date,
        region=region,
        service=service,
        signed_headers=_signed_headers(values["X-Amz-SignedHeaders"], presigned=True),
        signature=values["X-Amz-Signature"],
        presigned=True,
        amz_date=amz_date,
        expires=int(expires),
    )


# Valid Credential and SignedHeaders values, parsed: a client sends the same ones on
# every request of a day. Bounded, as they come from clients.
_CREDENTIALS: dict[str, tuple[str, str, str, str]] = {}
_SIGNED: dict[str, tuple[str, ...]] = {}
_PARSED_LIMIT = 1024


def _credential(value: str, *, presigned: bool) -> tuple[str, str, str, str]:
    found = _CREDENTIALS.get(value)
    if found is not None:
        return found
    parts = value.split("/")
    if (
        len(parts) != 5
        or not all(parts[:4])
        or parts[4] != "aws4_request"
        or not (len(parts[1]) == 8 and parts[1].isascii() and parts[1].isdigit())
    ):
        _malformed(presigned, f"the Credential is mal-formed; expecting {_CREDENTIAL_SHAPE}.")
    if len(_CREDENTIALS) >= _PARSED_LIMIT:
        _CREDENTIALS.clear()
    found = _CREDENTIALS[value] = (parts[0], parts[1], parts[2], parts[3])
    return found


def _signed_headers(value: str, *, presigned: bool) -> tuple[str, ...]:
    found = _SIGNED.get(value)
    if found is not None:
        return found
    names = tuple(value.split(";"))
    if not all(names):
        _malformed(presigned, f'the SignedHeaders "{value}" are malformed.')
    if len(_SIGNED) >= _PARSED_LIMIT:
        _SIGNED.clear()
    found = _SIGNED[value] = tuple(name.lower() for name in names)
    return found


def _header_date(headers: Mapping[str, str]) -> str:
    """The request time in SigV4's form, from x-amz-date or else the Date header."""
    value = headers.get("x-amz-date")
    if value is not None:
        value = value.strip()
        if _AMZ_DATE.fullmatch(value) and _parse_amz_date(value) is not None:
            return value
    elif "date" in headers:
        with suppress(TypeError, ValueError):
            return _utc(parsedate_to_datetime(headers["date"])).strftime("%Y%m%dT%H%M%SZ")
    raise AwsError(
        "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header", 403
    )


@lru_cache(maxsize=256)
def _parse_amz_date(value: str) -> datetime | None:
    """yyyyMMdd'T'HHmmss'Z' (already matched by _AMZ_DATE), None if no such moment.
    Sliced by hand: strptime costs more than the rest of a verification. Cached: every
    request signed in the same second carries the same value, and each is parsed twice
    (format check, clock skew)."""
    v = value
    try:
        return datetime(
            int(v[0:4]), int(v[4:6]), int(v[6:8]), int(v[9:11]), int(v[11:13]), int(v[13:15]),
            tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return None


def _check_time(claim: _Claim, amz_date: str, now: datetime, s3: bool) -> None:
    signed_at = _parse_amz_date(amz_date)
    assert signed_at is not None  # both callers validated the format
    if claim.presigned:
        if now > signed_at + timedelta(seconds=claim.expires):
            raise AwsError("AccessDenied", "Request has expired", 403)
        if signed_at - now > MAX_SKEW:
            raise AwsError("AccessDenied", "Request is not valid yet", 403)
    elif abs(now - signed_at) > MAX_SKEW:
        raise AwsError(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            403,
            fields={
                "RequestTime": amz_date,
                "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "MaxAllowedSkewMilliseconds": "900000",
            }
            if s3
            else None,
        )


def _payload_candidates(
    req: RequestView, claim: _Claim, payload_hash: str | None, s3: bool
) -> list[str]:
    """The payload hash(es) the signature may cover.

    Header auth: x-amz-content-sha256, else the caller's hash of the body. Presigned:
    X-Amz-Content-Sha256 from the query or a signed header, else UNSIGNED-PAYLOAD; for
    non-S3 services botocore's SigV4QueryAuth signs the body hash instead, so that is
    tried too when the caller gives it.
    """
    header = req.headers.get("x-amz-content-sha256")
    if claim.presigned:
        for name, value in _query_params(req.query_string):
            if name == "X-Amz-Content-Sha256":
                return [_valid_content_sha256(unquote(value))]
        if header is not None and "x-amz-content-sha256" in claim.signed_headers:
            return [_valid_content_sha256(header)]
        return [UNSIGNED_PAYLOAD] if s3 or not payload_hash else [UNSIGNED_PAYLOAD, payload_hash]
    if header is None:
        if payload_hash is None:
            raise AwsError(
                "InvalidRequest", "Missing required header for this request: x-amz-content-sha256"
            )
        return [payload_hash]
    header = _valid_content_sha256(header)
    if payload_hash and _SHA256_HEX.fullmatch(header) and header.lower() != payload_hash.lower():
        raise AwsError(
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            fields={
                "ClientComputedContentSHA256": header,
                "S3ComputedContentSHA256": payload_hash,
            }
            if s3
            else None,
        )
    return [header]


def _valid_content_sha256(value: str) -> str:
    if value in PAYLOAD_TOKENS or _SHA256_HEX.fullmatch(value):
        return value
    raise AwsError(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
        "or a valid sha256 value.",
    )


# -- the canonical request --------------------------------------------------------------


def _canonical_request(req: RequestView, claim: _Claim, payload: str, s3: bool) -> str:
    params = _query_params(req.query_string)
    if claim.presigned:
        params = [(k, v) for k, v in params if k != "X-Amz-Signature"]
    headers = ""  # a loop, not a join over a generator: 2k instructions fewer
    for name in claim.signed_headers:
        headers += f"{name}:{' '.join(req.headers.get(name, '').split())}\n"
    return "\n".join(
        (
            req.method.upper(),
            _canonical_uri(req.raw_path, s3),
            _canonical_query(params),
            headers,
            ";".join(claim.signed_headers),
            payload,
        )
    )


def _canonical_uri(raw_path: str, s3: bool) -> str:
    """S3 signs the path as sent. Every other service signs it with dot segments and
    empty segments removed, then percent-encoded once more (so '%3A' becomes '%253A'),
    as botocore's `SigV4Auth._normalize_url_path` does."""
    if s3:
        return raw_path or "/"
    return quote(_remove_dot_segments(raw_path), safe="/~")


def _remove_dot_segments(path: str) -> str:
    """botocore.utils.normalize_url_path: RFC 3986 5.2.4 plus collapsing '//'."""
    if not path:
        return "/"
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def _query_params(query: str) -> list[tuple[str, str]]:
    """Raw (still encoded) name/value pairs; a bare name gets an empty value."""
    if not query:  # most requests have none: saves 1k instructions, twice a request
        return []
    pairs = []
    for piece in query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append((name, value))
    return pairs


def _canonical_query(params: list[tuple[str, str]]) -> str:
    """Decode each name and value, re-encode per RFC 3986, sort by name then value.

    '+' decodes to a space: botocore sends its query parameters form-encoded
    (`urlencode`) but signs them with spaces as '%20'.
    """
    if not params:  # most requests have none: saves the 7k instructions of sorting nothing
        return ""
    encoded = sorted((_rfc3986(name), _rfc3986(value)) for name, value in params)
    return "&".join(f"{name}={value}" for name, value in encoded)


def _rfc3986(raw: str) -> str:
    if _UNRESERVED.fullmatch(raw):
        return raw
    # Round-trip bytes, not text, so that percent-encoded invalid UTF-8 survives intact.
    return quote(unquote_to_bytes(raw.replace("+", " ")), safe="-_.~")


# -- signatures -------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """kSigning: derived once per key, day, region and service, so cached."""
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


# The HMAC pads of each signing key, already hashed (key -> (inner, outer)). A signing
# key lives a day per access key, region and service, so few are ever in use.
_PADS: dict[bytes, tuple[hashlib._Hash, hashlib._Hash]] = {}
_PADS_LIMIT = 512
_INNER = bytes(x ^ 0x36 for x in range(256))
_OUTER = bytes(x ^ 0x5C for x in range(256))


def _hmac_hex(key: bytes, message: str) -> str:
    """HMAC-SHA256 (RFC 2104) from copies of the key's pads hashed once: a third of the
    cost of OpenSSL's one-shot `hmac.digest`, which sets up an HMAC context per call."""
    pads = _PADS.get(key)
    if pads is None:
        if len(_PADS) >= _PADS_LIMIT:
            _PADS.clear()
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        pads = _PADS[key] = (hashlib.sha256(block.translate(_INNER)),
                             hashlib.sha256(block.translate(_OUTER)))
    inner = pads[0].copy()
    inner.update(message.encode())
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest()


def _same(expected: str, provided: str) -> bool:
    # Bytes, because compare_digest refuses non-ASCII str and a client may send anything.
    return hmac.compare_digest(expected.encode(), provided.encode())


def _check_signature(expected: str, provided: str) -> None:
    if not _same(expected, provided):
        raise _mismatch(None)


def _mismatch(fields: Mapping[str, str] | None) -> AwsError:
    return AwsError(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        403,
        fields=fields,
    )


def _malformed(presigned: bool, detail: str) -> NoReturn:
    if presigned:
        raise AwsError("AuthorizationQueryParametersError", detail)
    raise AwsError(
        "AuthorizationHeaderMalformed", f"The authorization header is malformed; {detail}"
    )


def _unsupported(what: str) -> AwsError:
    return AwsError(
        "InvalidArgument", f"Unsupported {what}: only AWS4-HMAC-SHA256 (SigV4) is accepted."
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
