"""The aws-chunked decoder, fed bodies from botocore's encoder and AWS's examples."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import random
import zlib
from collections.abc import AsyncIterator, Iterable

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from kobako.protocol.chunked import MAX_LINE, AwsChunkedDecoder, payload_mode
from kobako.protocol.errors import AwsError
from kobako.protocol.sigv4 import ChunkSigner

SIGNING_KEY_EXAMPLE = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


async def pieces(data: bytes, sizes: Iterable[int]) -> AsyncIterator[bytes]:
    position = 0
    for size in sizes:
        if position >= len(data):
            break
        yield data[position : position + size]
        position += size
    if position < len(data):
        yield data[position:]


def random_sizes(seed: int, low: int = 1, high: int = 9000) -> Iterable[int]:
    rng = random.Random(seed)
    while True:
        yield rng.choice((1, 1, 2, 3, rng.randint(low, high), rng.randint(low, 100)))


def decode(
    body: bytes,
    sizes: Iterable[int],
    signer: ChunkSigner | None = None,
    expect_trailer: bool = True,
    **kwargs: int,
) -> tuple[bytes, dict[str, str]]:
    async def run() -> tuple[bytes, dict[str, str]]:
        decoder = AwsChunkedDecoder(pieces(body, sizes), signer, expect_trailer, **kwargs)
        out = bytearray()
        async for piece in decoder:
            out += piece
        return bytes(out), decoder.trailers

    return asyncio.run(run())


def decode_error(body: bytes, sizes: Iterable[int] = (1 << 30,), **kwargs: object) -> AwsError:
    with pytest.raises(AwsError) as caught:
        decode(body, sizes, **kwargs)  # type: ignore[arg-type]
    return caught.value


def botocore_body(data: bytes, chunk_size: int) -> bytes:
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=chunk_size,
    )
    return bytes(wrapper.read())


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("size", [0, 1, 1000, 70_000])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_botocore_unsigned_trailer_bodies_in_random_pieces(size: int, seed: int) -> None:
    data = random.Random(size).randbytes(size)
    body = botocore_body(data, chunk_size=8192)
    assert body.endswith(b"\r\n\r\n") and b"x-amz-checksum-crc32:" in body
    decoded, trailers = decode(body, random_sizes(seed))
    assert decoded == data
    assert trailers == {"x-amz-checksum-crc32": crc32_b64(data)}


def test_one_byte_pieces_and_one_piece() -> None:
    data = b"0123456789abcdef" * 700
    body = botocore_body(data, chunk_size=5000)
    assert decode(body, iter(lambda: 1, 0)) == (data, {"x-amz-checksum-crc32": crc32_b64(data)})
    assert decode(body, [len(body)])[0] == data


def test_truncated_bodies_raise_incomplete_body() -> None:
    data = b"some object data" * 10
    body = botocore_body(data, chunk_size=64)
    for cut in range(len(body)):
        err = decode_error(body[:cut])
        assert (err.code, err.status) == ("IncompleteBody", 400), cut
        assert err.message.startswith("You did not provide the number of bytes")
    assert decode(body, [7] * 1000)[0] == data


def test_malformed_framing() -> None:
    good = b"5\r\nhello\r\n0\r\n\r\n"
    assert decode(good, [3] * 10, expect_trailer=False) == (b"hello", {})
    bad = {
        b"5x\r\nhello\r\n0\r\n\r\n": "non-hex size",
        b"0x5\r\nhello\r\n0\r\n\r\n": "int() would accept this",
        b" 5\r\nhello\r\n0\r\n\r\n": "int() would accept this too",
        b"5\r\nhelloXX0\r\n\r\n": "no CRLF after the data",
        b"5\r\nhello\r\n0\r\n\r\nextra": "data after the end",
        b"5\r\nhello\r\n0\r\nno-colon\r\n\r\n": "a trailer without a colon",
        b"5\r\nhello\r\n0\r\na:1\r\na:2\r\n\r\n": "a repeated trailer",
    }
    for body, why in bad.items():
        err = decode_error(body, [2] * 100)
        assert (err.code, err.status) == ("InvalidRequest", 400), why
    # Trailing headers when none were declared.
    err = decode_error(b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
                       expect_trailer=False)  # fmt: skip
    assert err.code == "InvalidRequest"


def test_decoded_length_is_enforced() -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    assert decode(body, [4] * 10, decoded_length=5)[0] == b"hello"
    assert decode_error(body, decoded_length=6).code == "IncompleteBody"
    assert decode_error(body, decoded_length=4).code == "InvalidRequest"


def test_huge_header_line_is_refused_without_buffering_it() -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"1" * 1024

    async def run() -> None:
        async for _ in AwsChunkedDecoder(endless(), None, False):
            pass

    with pytest.raises(AwsError) as caught:
        asyncio.run(run())
    assert (caught.value.code, caught.value.status) == ("InvalidRequest", 400)
    assert pulled <= MAX_LINE // 1024 + 2
    # The same with a trailer line, in one-byte pieces.
    body = b"0\r\nx-amz-checksum-crc32:" + b"A" * (10 * MAX_LINE) + b"\r\n\r\n"
    assert decode_error(body, [1] * len(body)).code == "InvalidRequest"
    # A line of exactly the limit is fine.
    body = b"0;" + b"x" * (MAX_LINE - 2) + b"\r\n\r\n"
    assert decode(body, [1] * len(body), expect_trailer=False) == (b"", {})
    assert decode_error(b"0;x" + body[2:], [1] * len(body)).code == "InvalidRequest"
    assert decode_error(b"0;x" + body[2:]).code == "InvalidRequest"  # all in one piece


def test_data_is_yielded_as_it_arrives() -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"10000\r\n" + b"x" * 1000
        yield b"y" * 1000
        raise RuntimeError("the client went away")

    async def run() -> list[bytes]:
        got: list[bytes] = []
        with pytest.raises(RuntimeError):
            async for piece in AwsChunkedDecoder(source(), None, False):
                got.append(piece)
        return got

    assert b"".join(asyncio.run(run())) == b"x" * 1000 + b"y" * 1000


# AWS's published signed streaming examples (see test_sigv4 for their seed signatures).
def example_signer(seed: str) -> ChunkSigner:
    key = ("AWS4" + SIGNING_KEY_EXAMPLE).encode()
    for part in ("20130524", "us-east-1", "s3", "aws4_request"):
        key = hmac_sha256(key, part)
    return ChunkSigner(key, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", seed)


def hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNKS = [
    (65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_CHUNKS = [
    (65536, "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"),
    (1024, "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"),
    (0, "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"),
]
TRAILER = (
    b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
    b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n"
)


def signed_body(chunks: list[tuple[int, str]], trailer: bytes = b"") -> bytes:
    out = bytearray()
    for size, signature in chunks:
        out += f"{size:x};chunk-signature={signature}\r\n".encode()
        if size:
            out += b"a" * size + b"\r\n"
    return bytes(out + trailer + b"\r\n")


def test_aws_signed_chunk_example() -> None:
    body = signed_body(CHUNKS)
    assert len(body) == 66824  # the example's Content-Length
    for seed in (4, 5):
        decoded, trailers = decode(body, random_sizes(seed), example_signer(SEED), False)
        assert decoded == b"a" * 66560 and trailers == {}
    # One changed byte of data fails its chunk's signature.
    corrupt = body.replace(b"a\r\n400;", b"b\r\n400;")
    err = decode_error(corrupt, signer=example_signer(SEED), expect_trailer=False)
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)
    # So does a wrong seed, a missing signature and reordered chunks.
    assert decode_error(body, signer=example_signer("0" * 64), expect_trailer=False).status == 403
    unsigned = body.replace(f";chunk-signature={CHUNKS[2][1]}".encode(), b"")
    err = decode_error(unsigned, signer=example_signer(SEED), expect_trailer=False)
    assert err.code == "SignatureDoesNotMatch"
    swapped = signed_body([CHUNKS[1], CHUNKS[0], CHUNKS[2]])
    assert decode_error(swapped, signer=example_signer(SEED), expect_trailer=False).status == 403
    # Unsigned-trailer bodies still decode with no signer: the extension is ignored.
    assert decode(body, [999] * 100, None, False)[0] == b"a" * 66560


def test_aws_signed_trailer_example() -> None:
    body = signed_body(TRAILER_CHUNKS, TRAILER)
    assert len(body) == 66946
    decoded, trailers = decode(body, random_sizes(6), example_signer(TRAILER_SEED), True)
    assert decoded == b"a" * 66560
    assert trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    # A changed checksum, a missing trailer signature, a trailer after the signature.
    changed = body.replace(b"sOO8/Q==", b"AAAAAA==")
    err = decode_error(changed, signer=example_signer(TRAILER_SEED), expect_trailer=True)
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)
    dropped = signed_body(TRAILER_CHUNKS, TRAILER.split(b"x-amz-trailer-signature")[0])
    err = decode_error(dropped, signer=example_signer(TRAILER_SEED), expect_trailer=True)
    assert err.code == "SignatureDoesNotMatch"
    appended = signed_body(TRAILER_CHUNKS, TRAILER + b"x-amz-meta-evil:1\r\n")
    err = decode_error(appended, signer=example_signer(TRAILER_SEED), expect_trailer=True)
    assert err.code == "InvalidRequest"


def test_payload_mode() -> None:
    assert payload_mode(None) == "unsigned"
    assert payload_mode("UNSIGNED-PAYLOAD") == "unsigned"
    assert payload_mode(hashlib.sha256(b"").hexdigest()) == "signed"
    assert payload_mode("STREAMING-AWS4-HMAC-SHA256-PAYLOAD") == "streaming-signed"
    assert payload_mode("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER") == (
        "streaming-signed-trailer"
    )
    assert payload_mode("STREAMING-UNSIGNED-PAYLOAD-TRAILER") == "streaming-unsigned-trailer"
    for bad in ("", "abc", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "0" * 63):
        with pytest.raises(AwsError) as caught:
            payload_mode(bad)
        assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)
