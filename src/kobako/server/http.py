"""uvicorn's httptools protocol, with each response head sent together with its body,
and file regions sent with sendfile.

uvicorn writes a response's status line and headers (on `http.response.start`) and then
its body (on `http.response.body`) as two `transport.write` calls, so a small response
costs two sends, and on loopback each send runs the receiver's TCP path and wake-up in
the sender's time. `CoalescingTransport` holds a response head back until the next
write and sends both in one call. Held bytes never wait past the current iteration of
the event loop (a streamed body's head goes out while its first piece is read), and
are sent before the transport closes, so what goes on the wire is byte for byte what
uvicorn wrote, only in fewer sends.

Sendfile: a large object GET read 4 MiB into memory and wrote it to the socket, two
copies of every byte through this process, which held one stream near 1 GB/s. The
protocol offers the `kobako.sendfile` scope extension; the app then sends a `FileSlice`
as a body piece (uvicorn counts it against Content-Length by its `len`) and the
transport has the kernel copy it from the page cache to the socket (`os.sendfile`), in
a worker thread on its own duplicate of the socket's descriptor. While a slice is being
sent the protocol's writing is paused, so uvicorn's next `send` waits until it is done,
and anything else written meanwhile is queued behind it: the bytes on the wire are in
the order they were written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import select
from typing import Any, BinaryIO

log = logging.getLogger("kobako")

# The scope extension that tells the app it may send FileSlice body pieces.
SENDFILE_EXTENSION = "kobako.sendfile"
# A stalled client is noticed (the transport aborted) within this many seconds.
_POLL_S = 1.0
_sendfile_threads: concurrent.futures.ThreadPoolExecutor | None = None


class FileSlice:
    """`length` bytes at `offset` of an open file, as a response body piece; the
    transport closes the file once they are sent (or the send failed)."""

    def __init__(self, file: BinaryIO, offset: int, length: int) -> None:
        self.file = file
        self.offset = offset
        self.length = length
        self.taken = False  # set by the transport, which then closes it

    def __len__(self) -> int:
        return self.length

    def close(self) -> None:
        self.file.close()


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    """Threads of their own: a long send must not hold up the blob writes of PUTs."""
    global _sendfile_threads
    if _sendfile_threads is None:
        _sendfile_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="kobako-sendfile")
    return _sendfile_threads


def _sendfile_blocking(sock_fd: int, piece: FileSlice, cancelled: list[bool]) -> None:
    """Send all of `piece` on the (non-blocking) socket, waiting for room as needed."""
    file_fd = piece.file.fileno()
    offset, left = piece.offset, piece.length
    while left > 0:
        if cancelled[0]:
            raise ConnectionAbortedError("the connection was closed during sendfile")
        try:
            sent = os.sendfile(sock_fd, file_fd, offset, left)
        except BlockingIOError:
            select.select([], [sock_fd], [], _POLL_S)
            continue
        if sent == 0:
            raise OSError("the file is shorter than the response says")
        offset += sent
        left -= sent

# A head larger than this is sent as it is (S3 heads are well under 2 KiB).
_HOLD_LIMIT = 16 * 1024
# A body up to this size is copied behind the head into one buffer; a larger one goes
# with it in one writelines call (no copy).
_JOIN_LIMIT = 64 * 1024


class CoalescingTransport:
    """A transport proxy that sends a response head with what is written next, and a
    FileSlice with sendfile."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop,
                 protocol: Any = None) -> None:
        self._transport = transport
        self._loop = loop
        self._protocol = protocol
        self._held: bytes | None = None
        # While a sendfile runs: what was written after it, and whether to close then.
        self._sending = False
        self._queue: list[Any] = []
        self._close_after = False
        self._cancelled = [False]

    def write(self, data: Any) -> None:
        if self._sending:
            if isinstance(data, FileSlice):
                data.taken = True
            self._queue.append(data if isinstance(data, FileSlice) else bytes(data))
            return
        if isinstance(data, FileSlice):
            data.taken = True
            self._start_sendfile(data)
            return
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

    # -- sendfile

    def _start_sendfile(self, piece: FileSlice) -> None:
        self.flush()
        if self._transport.is_closing() or self._protocol is None:
            piece.close()
            return
        self._sending = True
        self._protocol.pause_writing()  # uvicorn's next send waits for resume_writing
        self._when_flushed(piece)

    def _when_flushed(self, piece: FileSlice) -> None:
        """Start the sendfile once the transport's own buffer (the head) is on the wire."""
        if self._cancelled[0] or self._transport.is_closing():
            piece.close()
            self._finish_sendfile(ok=False)
            return
        if self._transport.get_write_buffer_size():
            self._loop.call_later(0.001, self._when_flushed, piece)
            return
        try:
            sock_fd = os.dup(self._transport.get_extra_info("socket").fileno())
        except (AttributeError, OSError):
            log.warning("sendfile: no socket to send on; closing the connection")
            piece.close()
            self._finish_sendfile(ok=False)
            return
        done = self._loop.run_in_executor(_threads(), _sendfile_blocking, sock_fd, piece,
                                          self._cancelled)

        def finished(future: asyncio.Future[None]) -> None:
            os.close(sock_fd)
            piece.close()
            error = future.exception()
            if error is not None and not self._cancelled[0]:
                log.info("sendfile stopped: %r", error)
            self._finish_sendfile(ok=error is None)

        done.add_done_callback(finished)

    def _finish_sendfile(self, ok: bool) -> None:
        self._sending = False
        queued, self._queue = self._queue, []
        if not ok:
            # The body is cut short: the client sees the connection end early.
            self._transport.abort()
        else:
            for data in queued:
                self.write(data)
            if self._close_after:
                self.close()
        if not self._sending and self._protocol is not None:
            self._protocol.resume_writing()

    def cancel(self) -> None:
        """The connection is gone: stop a sendfile in flight."""
        self._cancelled[0] = True

    # -- the rest of the transport

    def writelines(self, pieces: Any) -> None:
        if self._sending:
            self._queue.extend(bytes(p) for p in pieces)
            return
        self.flush()
        self._transport.writelines(pieces)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        if self._sending:
            self._close_after = True
            return
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._cancelled[0] = True
        self._transport.abort()

    def is_closing(self) -> bool:
        # uvicorn asks after every response: spelt out, not found through __getattr__
        # (only reached once the ordinary attribute look-up has failed).
        return self._transport.is_closing()

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
            self.transport = CoalescingTransport(  # type: ignore[assignment]
                transport, self.loop, self)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            # The request's task has been created, not run: the app sees this.
            extensions = self.scope.setdefault("extensions", {})
            extensions[SENDFILE_EXTENSION] = {}

        def connection_lost(self, exc: Exception | None) -> None:
            if isinstance(self.transport, CoalescingTransport):
                self.transport.cancel()
            super().connection_lost(exc)

    return KobakoHttpToolsProtocol
