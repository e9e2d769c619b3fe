"""The HTTP request and response as the protocol layer sees them, free of ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import parse_qsl

from kobako.protocol.errors import AwsError

Receive = Callable[[], Awaitable[bytes | None]]


class BodyStream:
    """A request body read once, piece by piece, from the server.

    `read_all` has a cap so that services with small JSON bodies cannot be made to
    buffer unbounded data; S3 streams with `__aiter__` instead.
    """

    def __init__(
        self,
        pieces: AsyncIterator[bytes],
        trailers: Callable[[], dict[str, str]] | None = None,
        length: int | None = None,
    ) -> None:
        self._pieces = pieces
        self._trailers = trailers
        self.length = length
        self.consumed = False

    @property
    def trailers(self) -> dict[str, str]:
        """Trailing headers of an aws-chunked body (checksums); read after the body."""
        return self._trailers() if self._trailers else {}

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self.consumed:
            raise RuntimeError("request body already consumed")
        self.consumed = True
        return self._pieces

    async def read_all(self, limit: int = 64 * 1024 * 1024) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for piece in self:
            size += len(piece)
            if size > limit:
                raise AwsError("EntityTooLarge", "Your request body is too large.", 400)
            chunks.append(piece)
        return b"".join(chunks)

    @classmethod
    def of_bytes(cls, data: bytes) -> BodyStream:
        async def once() -> AsyncIterator[bytes]:
            if data:
                yield data

        return cls(once())


@dataclass
class HttpRequest:
    """One request: method, the raw (still percent-encoded) path, query and headers."""

    method: str
    raw_path: str
    query_string: str
    headers: dict[str, str]
    body: BodyStream
    host: str = ""
    client_ip: str = ""
    # The whole body, for services whose bodies are read before dispatch (not S3).
    body_bytes: bytes | None = None
    query: dict[str, str] = field(default_factory=dict)
    query_multi: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.host:
            self.host = self.headers.get("host", "")
        if self.query_string and not self.query_multi:
            for name, value in parse_qsl(self.query_string, keep_blank_values=True):
                self.query_multi.setdefault(name, []).append(value)
            self.query = {name: values[0] for name, values in self.query_multi.items()}


@dataclass(frozen=True)
class FileRegion:
    """`length` bytes at `offset` of a file that `open` opens (call it off the event loop)."""

    open: Callable[[], BinaryIO]
    offset: int
    length: int


class RegionBody:
    """A response body made of file regions (an object's blobs).

    It iterates as bytes, like any streamed body, for every consumer; a server that can
    hand a file to the kernel itself (sendfile) sends `regions` instead and never reads
    the bytes into memory.
    """

    def __init__(self, regions: list[FileRegion], pieces: AsyncIterator[bytes]) -> None:
        self.regions = regions
        self._pieces = pieces
        self._first: BinaryIO | None = None  # the first region's file, opened early

    async def open_first(self) -> None:
        """Open the first region's file now (off the event loop), so that a missing file
        fails before any response is started."""
        if self.regions and self._first is None:
            self._first = await asyncio.to_thread(self.regions[0].open)

    async def open(self, index: int) -> BinaryIO:
        """Region `index`'s file, for the caller to close."""
        if index == 0 and self._first is not None:
            first, self._first = self._first, None
            return first
        return await asyncio.to_thread(self.regions[index].open)

    def __aiter__(self) -> RegionBody:
        return self

    async def __anext__(self) -> bytes:
        return await self._pieces.__anext__()

    async def aclose(self) -> None:
        if self._first is not None:
            self._first.close()
            self._first = None
        aclose = getattr(self._pieces, "aclose", None)
        if aclose is not None:
            await aclose()


Body = bytes | AsyncIterator[bytes]


@dataclass
class HttpResponse:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Body = b""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None
