"""POST /invocations to a model server on 127.0.0.1, on the event loop, keep-alive.

InvokeEndpoint sits on the hot path of every inference, so the request goes over a
pooled keep-alive connection (no connect, no server thread per call) without a worker
thread; InvokeEndpointWithResponseStream needs the answer as it arrives, one piece per
HTTP chunk the model server sends. A plain (Content-Length) answer is one piece.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

# Idle connections kept per model server.
_POOL = 8
# A request body up to this size is copied behind its head (one buffer, one send).
_JOIN_LIMIT = 64 * 1024

Release = Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]


class StreamBroken(Exception):
    """The model server closed the connection or sent something that is not HTTP."""


@dataclass
class Answer:
    """The model server's status and headers; the body is read with `pieces` or `read`."""

    status: int
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    # Takes the connection back once the body was read to its end.
    release: Release | None = None
    done: bool = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    async def pieces(self) -> AsyncIterator[bytes]:
        """The body: each chunk of a chunked answer as it comes, else the whole body."""
        try:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                while True:
                    line = await self.reader.readline()
                    if not line.endswith(b"\n"):
                        raise StreamBroken("the model server closed the stream mid-answer")
                    try:
                        size = int(line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        raise StreamBroken("the model server sent a malformed chunk") from None
                    if size == 0:
                        while (await self.reader.readline()).strip():
                            pass  # trailers
                        break
                    data = await self.reader.readexactly(size + 2)
                    yield data[:-2]
            elif "content-length" in self.headers:
                length = int(self.headers["content-length"])
                data = await self.reader.readexactly(length) if length else b""
                if data:
                    yield data
            else:
                data = await self.reader.read()
                if data:
                    yield data
                self.headers["connection"] = "close"
        except asyncio.IncompleteReadError:
            raise StreamBroken("the model server closed the stream mid-answer") from None
        self.done = True

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.pieces()])

    def close(self) -> None:
        """Back to the pool if the body was read and the server keeps the connection."""
        if self.done and self.headers.get("connection", "").lower() != "close" \
                and self.release is not None:
            self.release(self.reader, self.writer)
        else:
            self.writer.close()


class ModelClient:
    def __init__(self) -> None:
        self._idle: dict[int, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def post(self, port: int, body: bytes, headers: dict[str, str],
                   timeout: float) -> Answer:
        """Send the request and read the answer's head (within `timeout`)."""
        head = [f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Length: {len(body)}\r\n"]
        head.extend(f"{name}: {value}\r\n" for name, value in headers.items())
        head.append("\r\n")
        # Head and body go out in one send; a large body is not copied behind the head.
        encoded = "".join(head).encode("latin-1")
        request = (encoded, body) if len(body) > _JOIN_LIMIT else (encoded + body, b"")
        async with asyncio.timeout(timeout):
            reused = self._take(port)
            if reused is not None:
                try:
                    return await self._exchange(port, *reused, request)
                except (StreamBroken, ConnectionError):
                    reused[1].close()  # closed while idle: once more on a new connection
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await self._exchange(port, reader, writer, request)
            except BaseException:
                writer.close()
                raise

    async def _exchange(self, port: int, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, request: tuple[bytes, bytes]) -> Answer:
        if request[1]:
            writer.writelines(request)
        else:
            writer.write(request[0])
        try:
            # The whole head in one read: it nearly always came in one segment.
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                raise StreamBroken("the model server closed the connection without "
                                   "answering") from None
            raise StreamBroken("the model server closed the connection mid-head") from None
        except asyncio.LimitOverrunError:
            raise StreamBroken("the model server sent an oversized head") from None
        status_line, _, rest = raw.partition(b"\r\n")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise StreamBroken("the model server answered with something that is not HTTP")
        headers: dict[str, str] = {}
        for line in rest.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if parts[0] == b"HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
            headers["connection"] = "close"
        return Answer(int(parts[1]), headers, reader, writer,
                      lambda r, w: self._give(port, r, w))

    def _take(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        idle = self._idle.get(port)
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    def _give(self, port: int, reader: asyncio.StreamReader,
              writer: asyncio.StreamWriter) -> None:
        idle = self._idle.setdefault(port, [])
        if len(idle) < _POOL:
            idle.append((reader, writer))
        else:
            writer.close()

    def forget(self, port: int) -> None:
        """Close the idle connections to a model server that is going away."""
        for _, writer in self._idle.pop(port, []):
            with contextlib.suppress(Exception):
                writer.close()
