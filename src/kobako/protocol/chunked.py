"""Streaming decoder for `Content-Encoding: aws-chunked` request bodies.

S3 clients send uploads in this framing when they sign each chunk
(STREAMING-AWS4-HMAC-SHA256-PAYLOAD) or put a checksum after the data
(the *-TRAILER modes, which boto3 and the aws CLI use by default):

    hex-size[;chunk-signature=sig]\\r\\n <data> \\r\\n   ... repeated ...
    0[;chunk-signature=sig]\\r\\n
    [name:value\\r\\n ...] [x-amz-trailer-signature:sig\\r\\n]
    \\r\\n

Objects can be gigabytes, so the decoder yields data as it arrives and holds at most
one header or trailer line: lines are bounded, data never accumulates. Data is yielded
before its chunk signature is checked (a chunk can be as large as the client likes), so
the consumer must not commit what it wrote until iteration ends without an error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator

from kobako.protocol.errors import AwsError
from kobako.protocol.sigv4 import (
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    ChunkSigner,
)

MAX_LINE = 4096  # a chunk header is ~90 bytes, a trailer line well under 200
MAX_TRAILER = 16384  # all trailer lines together
_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}", re.ASCII)
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
_TRAILER_SIGNATURE = "x-amz-trailer-signature"


def payload_mode(content_sha256: str | None) -> str:
    """Name what x-amz-content-sha256 says about the body.

    'signed' (a hex SHA-256 the body must match), 'unsigned' (UNSIGNED-PAYLOAD, or no
    header: nothing in the body to check), 'streaming-signed', 'streaming-signed-trailer'
    or 'streaming-unsigned-trailer' (aws-chunked bodies). Anything else is rejected.
    """
    if content_sha256 is None or content_sha256 == UNSIGNED_PAYLOAD:
        return "unsigned"
    if content_sha256 == STREAMING_SIGNED:
        return "streaming-signed"
    if content_sha256 == STREAMING_SIGNED_TRAILER:
        return "streaming-signed-trailer"
    if content_sha256 == STREAMING_UNSIGNED_TRAILER:
        return "streaming-unsigned-trailer"
    if _SHA256_HEX.fullmatch(content_sha256):
        return "signed"
    raise AwsError(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
        "or a valid sha256 value.",
    )


class AwsChunkedDecoder:
    """Iterate over it to get the decoded payload; then `trailers` holds the trailer.

    `signer` (from `AuthContext.chunk_verifier()`) makes every chunk signature, and with
    `expect_trailer` the trailer signature, mandatory and checked. `expect_trailer`
    allows trailing headers after the last chunk; without it there must be none.
    `decoded_length` (x-amz-decoded-content-length), when given, is enforced.
    """

    def __init__(
        self,
        source: AsyncIterable[bytes],
        signer: ChunkSigner | None,
        expect_trailer: bool,
        *,
        decoded_length: int | None = None,
    ) -> None:
        self._reader = _Reader(source)
        self._signer = signer
        self._expect_trailer = expect_trailer
        self._decoded_length = decoded_length
        self.trailers: dict[str, str] = {}
        self.decoded_bytes = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._reader
        while True:
            size, signature = self._chunk_header(await reader.line())
            self.decoded_bytes += size
            if self._decoded_length is not None and self.decoded_bytes > self._decoded_length:
                raise _invalid("The body is longer than x-amz-decoded-content-length.")
            digest = hashlib.sha256() if self._signer is not None else None
            remaining = size
            while remaining:
                piece = await reader.read_some(remaining)
                remaining -= len(piece)
                if digest is not None:
                    digest.update(piece)
                yield piece
            if self._signer is not None and digest is not None:
                self._signer.verify_chunk(signature, digest.hexdigest())
            if size == 0:
                break
            await reader.crlf()
        await self._read_trailers()
        if not await reader.at_eof():
            raise _invalid("Unexpected data after the end of the aws-chunked body.")
        if self._decoded_length is not None and self.decoded_bytes != self._decoded_length:
            raise _incomplete()

    def _chunk_header(self, line: bytes) -> tuple[int, str]:
        size, _, extensions = line.partition(b";")
        if not _SIZE.fullmatch(size):
            raise _invalid("Malformed aws-chunked chunk header.")
        signature = ""
        for extension in extensions.split(b";"):
            name, _, value = extension.partition(b"=")
            if name.strip() == b"chunk-signature":
                signature = value.strip().decode("latin-1")
        if self._signer and not _SIGNATURE.fullmatch(signature):
            raise _signature_missing("chunk-signature")
        return int(size, 16), signature

    async def _read_trailers(self) -> None:
        """Trailing `name:value` lines up to the empty line, the signature one last."""
        signature: str | None = None
        total = 0
        while line := await self._reader.line():
            total += len(line)
            if total > MAX_TRAILER:
                raise _invalid("The trailing headers are too large.")
            if not self._expect_trailer:
                raise _invalid("Trailing headers were sent but none were declared.")
            if signature is not None:
                raise _invalid("x-amz-trailer-signature must be the last trailing header.")
            name, colon, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if not colon or not name:
                raise _invalid("Malformed trailing header.")
            if name == _TRAILER_SIGNATURE:
                signature = value
            elif name in self.trailers:
                raise _invalid(f"Trailing header {name} was sent twice.")
            else:
                self.trailers[name] = value
        if self._signer and self._expect_trailer:
            if signature is None:
                raise _signature_missing(_TRAILER_SIGNATURE)
            canonical = "".join(f"{n}:{v}\n" for n, v in sorted(self.trailers.items()))
            self._signer.verify_trailer(signature, canonical.encode("latin-1"))


class _Reader:
    """Pulls bytes from the source on demand: whole lines (bounded) or data pieces."""

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self._source = aiter(source)
        self._buf = bytearray()
        self._pos = 0

    async def _pull(self) -> bytes | None:
        """The next non-empty piece of the source, None at its end."""
        while True:
            try:
                piece = await anext(self._source)
            except StopAsyncIteration:
                return None
            if piece:
                return piece

    async def _fill(self) -> bool:
        piece = await self._pull()
        if piece is None:
            return False
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += piece
        return True

    async def line(self) -> bytes:
        """The next CRLF-terminated line, without its CRLF; at most MAX_LINE bytes."""
        scanned = self._pos
        while True:
            end = self._buf.find(b"\r\n", scanned)
            if end >= 0:
                if end - self._pos > MAX_LINE:
                    break
                line = bytes(self._buf[self._pos : end])
                self._pos = end + 2
                return line
            if len(self._buf) - self._pos > MAX_LINE + 1:
                break
            scanned = max(self._pos, len(self._buf) - 1) - self._pos  # a '\r' may end it
            if not await self._fill():
                raise _incomplete()
            scanned += self._pos
        raise _invalid(f"An aws-chunked header line is longer than {MAX_LINE} bytes.")

    async def read_some(self, limit: int) -> bytes:
        """Between 1 and `limit` bytes of data; pieces pass through without copying when
        nothing is buffered."""
        available = len(self._buf) - self._pos
        if available:
            count = min(limit, available)
            data = bytes(self._buf[self._pos : self._pos + count])
            self._pos += count
            return data
        piece = await self._pull()
        if piece is None:
            raise _incomplete()
        if len(piece) <= limit:
            return piece
        self._buf[:] = memoryview(piece)[limit:]
        self._pos = 0
        return piece[:limit]

    async def crlf(self) -> None:
        while len(self._buf) - self._pos < 2:
            if not await self._fill():
                raise _incomplete()
        if self._buf[self._pos : self._pos + 2] != b"\r\n":
            raise _invalid("An aws-chunked chunk is not followed by CRLF.")
        self._pos += 2

    async def at_eof(self) -> bool:
        return self._pos == len(self._buf) and not await self._fill()


def _incomplete() -> AwsError:
    return AwsError(
        "IncompleteBody",
        "You did not provide the number of bytes specified by the Content-Length HTTP header",
    )


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidRequest", message)


def _signature_missing(what: str) -> AwsError:
    return AwsError(
        "SignatureDoesNotMatch",
        f"The aws-chunked body is missing a valid {what}.",
        403,
    )
