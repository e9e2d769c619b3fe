"""The ASGI application: one port, every service.

A request goes: ASGI scope -> `HttpRequest` -> pick the service (SigV4 scope,
X-Amz-Target, else S3) -> verify the signature -> the codec finds and parses the
operation -> the handler -> the codec serializes the result or the `AwsError`.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from kobako.config import Config
from kobako.protocol.chunked import AwsChunkedDecoder, payload_mode
from kobako.protocol.errors import AwsError, not_implemented
from kobako.protocol.http import BodyStream, HttpRequest, HttpResponse, RegionBody
from kobako.protocol.sigv2 import parse_auth_v2, verify_v2
from kobako.protocol.sigv4 import AuthContext, RequestView, parse_auth, verify
from kobako.server.deferred import DeferredServices
from kobako.server.http import SENDFILE_EXTENSION, FileSlice
from kobako.server.requestlog import RequestLog
from kobako.server.service import ANONYMOUS, RequestContext, Service

log = logging.getLogger("kobako")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SMALL_BODY_LIMIT = 32 * 1024 * 1024
# After start-up, how long the deferred services wait for a first request to finish.
_DEFERRED_AFTER_S = 0.2


class KobakoApp:
    """`services` start before the server listens; `deferred` ones right after, and a
    request for one of those waits until they have started."""

    def __init__(self, config: Config, services: list[Service],
                 deferred: DeferredServices | None = None) -> None:
        self.config = config
        self.services = services
        self._by_signing_name: dict[str, Service] = {}
        self._by_target: dict[str, Service] = {}
        self._add(services)
        self._default = self._by_signing_name.get("s3", services[0])
        self._deferred = deferred
        if deferred is not None:
            deferred.on_ready = self._route_deferred
        # Until the deferred services are routed to, a request for one of them waits.
        self._pending: frozenset[str] | None = deferred.signing_names if deferred else None
        self._request_log = RequestLog(log)

    def _add(self, services: list[Service]) -> None:
        for service in services:
            self._by_signing_name.update(dict.fromkeys(service.signing_names, service))
            prefix = service.codec.model.metadata.get("targetPrefix")
            if prefix:
                self._by_target[str(prefix)] = service

    def _route_deferred(self, services: list[Service]) -> None:
        """The deferred services have started: route to them from now on."""
        self._add(services)
        self._pending = None
        # As cli.py does after build_app: what they built lives as long as the server,
        # and frozen it stays out of the collector's full passes.
        gc.freeze()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for service in self.services:
                    for hook in service.startup:
                        await hook()
                await send({"type": "lifespan.startup.complete"})
                if self._deferred is not None:
                    # Soon, not at once: building them holds the GIL, and would slow
                    # the first answers (S3's) that need none of it. A request for one
                    # of them, or the first answer's end, starts it earlier.
                    asyncio.get_running_loop().call_later(_DEFERRED_AFTER_S,
                                                          self._deferred.start)
            elif message["type"] == "lifespan.shutdown":
                for service in self.services:
                    for hook in service.shutdown:
                        await hook()
                if self._deferred is not None:
                    await self._deferred.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        raw_headers = scope["headers"]
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in raw_headers}
        if len(headers) != len(raw_headers):  # a repeated header: its values, joined
            headers = _joined_headers(raw_headers)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        incoming = _Incoming(receive, _bodiless(headers))
        request = HttpRequest(
            method=scope["method"],
            raw_path=raw_path.decode("latin-1"),
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=BodyStream(incoming.pieces()),
            client_ip=(scope.get("client") or ("",))[0],
        )
        # Unique enough to find a request in the log; not a secret, so no syscall for it.
        request_id = f"{random.getrandbits(64):016X}"
        service = self._default
        path: str | None = None
        operation = "-"
        view = _view(request)  # one per request: it remembers the parsed signature
        try:
            picked = self._pick_service(request, view)
            if picked is None:  # a service still starting: wait for it
                assert self._deferred is not None
                await self._deferred.ready()
                picked = self._pick_service(request, view)
                assert picked is not None  # routed to by now
            service = picked
            path = self._path(service, request)  # once: decorate below needs it too
            response, operation = await self._dispatch(service, request, path, request_id,
                                                       view)
        except AwsError as error:
            response = service.codec.serialize_error(error, request_id)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.raw_path)
            internal = AwsError("InternalError", "We encountered an internal error.", 500)
            response = service.codec.serialize_error(internal, request_id)
        if service.decorate is not None:
            if path is None:  # the request failed before its path was found
                path = self._path(service, request)
            service.decorate(request, path, response)
        if not incoming.done and (incoming.unread_continue(headers)
                                  or not await incoming.drain()):
            response.headers.append(("Connection", "close"))
        await _send_response(send, response, request_id, request.method == "HEAD", scope,
                             service.request_id_headers)
        if self._pending is not None and self._deferred is not None:
            self._deferred.start()  # the first answer is out: build the rest now
        self._request_log.line(
            f"{request.method} {request.raw_path} {service.name} -> {response.status} "
            f"{operation} {(time.perf_counter() - started) * 1000:.1f}ms")

    def _pick_service(self, request: HttpRequest, view: RequestView) -> Service | None:
        """The service a request is for; None while that may be a deferred service that
        has not started yet."""
        found = parse_auth(view)
        if found is not None:
            service = self._by_signing_name.get(found[1])
            if service is None:
                if self._pending is not None and found[1] in self._pending:
                    return None
                raise AwsError("InvalidAction", f"kobako does not serve {found[1]!r}.", 400)
            if found[1] == "sagemaker" and "x-amz-target" not in request.headers:
                return self._by_signing_name.get("sagemaker-runtime", service)
            return service
        target = request.headers.get("x-amz-target", "").rpartition(".")[0]
        service = self._by_target.get(target)
        if service is None and target and self._pending is not None:
            return None  # unsigned, naming a target: maybe a deferred service's
        return service or self._default

    async def _dispatch(
        self, service: Service, request: HttpRequest, path: str, request_id: str,
        view: RequestView,
    ) -> tuple[HttpResponse, str]:
        if service.preflight is not None:
            early = await service.preflight(request, path)
            if early is not None:
                return early, "Preflight"
        auth = await self._authenticate(service, request, view)
        op, labels = service.codec.find_operation(request, path)
        handler = service.handlers.get(op.name)
        if handler is None:
            raise not_implemented(service.name, op.name)
        params = await service.codec.parse(op, request, labels)
        context = RequestContext(
            request=request,
            request_id=request_id,
            operation=op.name,
            region=auth.region,
            credential=auth.credential,
            auth=auth,
            params=params,
        )
        output = await handler(context, params)
        if isinstance(output, HttpResponse):
            return output, op.name
        output.setdefault("__request_id", request_id)
        return service.codec.serialize(op, output), op.name

    @staticmethod
    def _path(service: Service, request: HttpRequest) -> str:
        return service.rewrite_path(request) if service.rewrite_path else request.raw_path

    async def _authenticate(
        self, service: Service, request: HttpRequest, view: RequestView
    ) -> AuthContext:
        if parse_auth(view) is None:
            if service.name == "s3" and parse_auth_v2(view) is not None:
                return self._authenticate_v2(service, request, view)
            if service.allows_anonymous:
                return self._anonymous(request)
            raise AwsError("AccessDenied", "Access Denied: the request is not signed.", 403)
        if not service.streams_body:
            body = await request.body.read_all(_SMALL_BODY_LIMIT)
            auth = verify(view, self.config.lookup, payload_hash=hashlib.sha256(body).hexdigest())
            request.body = BodyStream.of_bytes(body)
            request.body_bytes = body
            return auth
        auth = verify(view, self.config.lookup)
        request.body = _payload_body(request, auth)
        return auth


    def _anonymous(self, request: HttpRequest) -> AuthContext:
        """An unsigned request, for a service whose handlers decide (S3 policies, ACLs)."""
        auth = AuthContext(
            credential=ANONYMOUS, service="s3", region=self.config.region, amz_date="",
            scope="", signature="", signing_key=b"", presigned=False,
            payload_hash="UNSIGNED-PAYLOAD",
        )
        mode = payload_mode(request.headers.get("x-amz-content-sha256"))
        if mode.startswith("streaming-signed"):
            raise AwsError("AccessDenied", "Access Denied", 403)
        request.body = _payload_body(request, auth, "unsigned" if mode == "signed" else mode)
        return auth

    def _authenticate_v2(
        self, service: Service, request: HttpRequest, view: RequestView
    ) -> AuthContext:
        """S3's legacy Signature Version 2 (boto3 still presigns with it by default).

        It signs no payload hash, so the body streams unchecked, as on AWS; for a
        virtual-hosted request the signed resource starts with the Host's bucket.
        """
        path = self._path(service, request)
        bucket = path[1:].split("/", 1)[0] if path != request.raw_path else None
        auth = verify_v2(view, self.config.lookup, bucket=bucket)
        mode = payload_mode(request.headers.get("x-amz-content-sha256"))
        if mode.startswith("streaming-signed"):
            raise AwsError("InvalidArgument", "Signed aws-chunked bodies need Signature "
                           "Version 4.", 400)
        if mode == "signed":
            mode = "unsigned"
        request.body = _payload_body(request, auth, mode)
        return auth


def _joined_headers(raw_headers: Any) -> dict[str, str]:
    """Headers by lower-case name, a repeated one's values joined with commas in order
    (RFC 9110, 5.3)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _view(request: HttpRequest) -> RequestView:
    return RequestView(
        method=request.method,
        raw_path=request.raw_path,
        query_string=request.query_string,
        headers=request.headers,
    )


def _payload_body(request: HttpRequest, auth: AuthContext, mode: str | None = None) -> BodyStream:
    """The decoded request body for a streaming service, checked as it streams."""
    mode = mode or payload_mode(request.headers.get("x-amz-content-sha256"))
    source = request.body.__aiter__()
    length_header = request.headers.get("x-amz-decoded-content-length")
    if mode.startswith("streaming"):
        signer = auth.chunk_verifier() if mode.startswith("streaming-signed") else None
        length = int(length_header) if length_header and length_header.isdigit() else None
        decoder = AwsChunkedDecoder(
            source, signer, expect_trailer=mode.endswith("trailer"), decoded_length=length
        )
        return BodyStream(decoder.__aiter__(), lambda: decoder.trailers, length)
    content_length = request.headers.get("content-length")
    length = int(content_length) if content_length and content_length.isdigit() else None
    if mode == "signed" and not auth.presigned:
        return BodyStream(_hash_checked(source, auth.payload_hash), None, length)
    return BodyStream(source, None, length)


async def _hash_checked(source: AsyncIterator[bytes], expected: str) -> AsyncIterator[bytes]:
    digest = hashlib.sha256()
    async for piece in source:
        digest.update(piece)
        yield piece
    if digest.hexdigest() != expected.lower():
        raise AwsError(
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            400,
        )


class _Incoming:
    """The request body as ASGI delivers it, remembering whether it was all read.

    A handler may answer (an error, usually) without reading the body; the rest must
    then be drained, or the next request on the keep-alive connection would start in
    the middle of this one's body.
    """

    _DRAIN_LIMIT = 8 * 1024 * 1024

    def __init__(self, receive: Receive, bodiless: bool = False) -> None:
        self._receive = receive
        # A request that declares no body has none: HTTP/1.1 frames a request body only
        # by Content-Length or Transfer-Encoding, so there is nothing to read or drain.
        self.done = bodiless
        self.started = False

    def unread_continue(self, headers: dict[str, str]) -> bool:
        """Whether the client still waits for '100 Continue' before sending its body.

        Then the answer goes out without the body: reading it now would make the server
        send '100 Continue' first (S3 answers a refused PUT with the error alone).
        """
        return not self.started and headers.get("expect", "").lower() == "100-continue"

    async def pieces(self) -> AsyncIterator[bytes]:
        while not self.done:
            self.started = True
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.done = True
                raise AwsError("IncompleteBody", "The request body ended early.", 400)
            chunk = message.get("body", b"")
            self.done = not message.get("more_body", False)
            if chunk:
                yield chunk

    async def drain(self) -> bool:
        """Read and drop what is left; False if too much is left to be worth it."""
        drained = 0
        try:
            async for piece in self.pieces():
                drained += len(piece)
                if drained > self._DRAIN_LIMIT:
                    return False
        except AwsError:
            return False
        return True


def _bodiless(headers: dict[str, str]) -> bool:
    return "transfer-encoding" not in headers and headers.get("content-length", "0") == "0"


async def _send_response(send: Send, response: HttpResponse, request_id: str, head: bool,
                         scope: Scope, id_headers: tuple[bytes, ...]) -> None:
    headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in response.headers]
    raw_id = request_id.encode()
    headers.extend((name, raw_id) for name in id_headers)
    body = response.body
    if isinstance(body, bytes):
        if response.header("content-length") is None:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if head:
        if hasattr(body, "aclose"):
            await body.aclose()
    elif (isinstance(body, RegionBody) and SENDFILE_EXTENSION in (scope.get("extensions") or ())
          and response.header("content-length") is not None):
        # Each region goes from the page cache to the socket in the kernel (see
        # kobako.server.http); the transport closes each file once it is sent.
        try:
            for index, region in enumerate(body.regions):
                part = FileSlice(await body.open(index), region.offset, region.length)
                await send({"type": "http.response.body", "more_body": True, "body": part})
                if not part.taken:  # the client is gone: uvicorn dropped it
                    part.close()
        finally:
            await body.aclose()
    else:
        try:
            async for piece in body:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        finally:
            if isinstance(body, RegionBody):
                await body.aclose()
    await send({"type": "http.response.body", "body": b""})
