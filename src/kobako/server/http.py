"""uvicorn's httptools protocol, with each response head sent together with its body.

uvicorn writes a response's status line and headers (on `http.response.start`) and then
its body (on `http.response.body`) as two `transport.write` calls, so a small response
costs two sends, and on loopback each send runs the receiver's TCP path and wake-up in
the sender's time. `CoalescingTransport` holds a response head back until the next
write and sends both in one call. Held bytes never wait past the current iteration of
the event loop (a streamed body's head goes out while its first piece is read), and
are sent before the transport closes, so what goes on the wire is byte for byte what
uvicorn wrote, only in fewer sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

# A head larger than this is sent as it is (S3 heads are well under 2 KiB).
_HOLD_LIMIT = 16 * 1024
# A body up to this size is copied behind the head into one buffer; a larger one goes
# with it in one writelines call (no copy).
_JOIN_LIMIT = 64 * 1024


class CoalescingTransport:
    """A transport proxy that sends a response head with what is written next."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= _JOIN_LIMIT:
                self._transport.write(held + bytes(data))
            else:
                self._transport.writelines((held, data))
            return
        if (len(data) <= _HOLD_LIMIT and bytes(data[:9]) == b"HTTP/1.1 "
                and bytes(data[9:10]) != b"1"):  # not an interim (100 Continue) answer
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def writelines(self, pieces: Any) -> None:
        self.flush()
        self._transport.writelines(pieces)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def http_protocol() -> Any:
    """The protocol class for uvicorn: httptools' with coalesced writes, or "auto" (h11)
    where httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class KobakoHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]

    return KobakoHttpToolsProtocol
