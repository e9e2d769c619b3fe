"""What a service plugs into the server: its model's codec and its handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kobako.protocol.codecs import Codec
from kobako.protocol.http import HttpRequest, HttpResponse
from kobako.protocol.sigv4 import AuthContext, Credential


@dataclass
class RequestContext:
    """Who asked, for what, where: handed to every handler beside its parameters."""

    request: HttpRequest
    request_id: str
    operation: str
    region: str
    credential: Credential
    auth: AuthContext | None = None
    # The parsed parameters, for checks that need them beside the handler (S3 access).
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def account_id(self) -> str:
        return self.credential.account_id

    @property
    def anonymous(self) -> bool:
        return self.credential is ANONYMOUS


# The caller of an unsigned request, where a service lets policies decide (S3).
ANONYMOUS = Credential(access_key_id="", secret_access_key="", display_name="anonymous",
                       account_id="")


Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class Service:
    """One AWS service as served by kobako.

    `signing_names` are the SigV4 scope names that route to it; `streams_body` is
    True where request bodies go to the handler unread (S3), so the payload hash is
    checked while streaming instead of before dispatch.
    """

    name: str
    codec: Codec
    handlers: dict[str, Handler]
    signing_names: tuple[str, ...]
    streams_body: bool = False
    # Unsigned requests reach the handlers as ANONYMOUS (S3: bucket policies and ACLs
    # decide); elsewhere they are refused before dispatch.
    allows_anonymous: bool = False
    rewrite_path: Callable[[HttpRequest], str] | None = None
    # Answers a request before authentication (S3's CORS preflight), or None to go on.
    preflight: Callable[[HttpRequest, str], Awaitable[HttpResponse | None]] | None = None
    # Adds headers to every response (S3's CORS headers for a matching Origin).
    decorate: Callable[[HttpRequest, str, HttpResponse], None] | None = None
    # The response headers that name the request: both forms by default (botocore's
    # JSON and query parsers read x-amzn-requestid); S3 sends x-amz-request-id only.
    request_id_headers: tuple[bytes, ...] = (b"x-amz-request-id", b"x-amzn-requestid")
    startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
