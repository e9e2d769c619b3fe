"""Shared helpers for the SigV2 and SigV4 tests: one test credential, and a signed
request as the server sees it."""

from __future__ import annotations

from urllib.parse import urlsplit

from botocore.awsrequest import AWSPreparedRequest

from kobako.protocol.sigv4 import Credential, RequestView

AKID = "AKIDKOBAKOTEST000001"
SECRET = "kobako/secret+key/0123456789abcdefghijklmn"
CRED = Credential(AKID, SECRET, "tester", "123456789012")


def lookup(akid: str) -> Credential | None:
    return CRED if akid == AKID else None


def view(method: str, url: str, headers: dict[str, str] | None = None) -> RequestView:
    """What the server sees: raw path and query, lower-case headers, and the Host."""
    parts = urlsplit(url)
    seen = {name.lower(): str(value) for name, value in (headers or {}).items()}
    seen.setdefault("host", parts.netloc)
    return RequestView(method, parts.path, parts.query, seen)


def view_prepared(prepared: AWSPreparedRequest) -> RequestView:
    """What the server sees of a request botocore prepared (the Host the HTTP client
    adds included)."""
    return view(prepared.method, prepared.url, dict(prepared.headers.items()))


def with_headers(req: RequestView, **changes: str) -> RequestView:
    """The same request with some headers set (`x_amz_date` is `x-amz-date`)."""
    headers = dict(req.headers)
    headers.update({name.replace("_", "-"): value for name, value in changes.items()})
    return RequestView(req.method, req.raw_path, req.query_string, headers)
