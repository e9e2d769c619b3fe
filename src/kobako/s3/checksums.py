"""S3's integrity values: the MD5 ETag and the x-amz-checksum-* algorithms."""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Protocol

import crc32c as _crc32c

ALGORITHMS = ("CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME")


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...
    def digest(self) -> bytes: ...


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


class _Crc32c(_Crc32):
    def update(self, data: bytes) -> None:
        self.value = _crc32c.crc32c(data, self.value)


_CRC64NVME_POLY = 0x9A6C9329AC4BC9B5


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC64NVME_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64_TABLE = _crc64_table()


class _Crc64Nvme:
    """CRC-64/NVME in pure Python (slow: used only when a client asks for it)."""

    def __init__(self) -> None:
        self.value = 0xFFFFFFFFFFFFFFFF

    def update(self, data: bytes) -> None:
        crc = self.value
        table = _CRC64_TABLE
        for byte in data:
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        self.value = crc

    def digest(self) -> bytes:
        return (self.value ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def new_hasher(algorithm: str) -> Hasher:
    if algorithm == "CRC32":
        return _Crc32()
    if algorithm == "CRC32C":
        return _Crc32c()
    if algorithm == "CRC64NVME":
        return _Crc64Nvme()
    if algorithm == "SHA1":
        return hashlib.sha1()
    return hashlib.sha256()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag AWS gives a completed multipart upload: md5 of the md5s, dash, count."""
    return f'"{hashlib.md5(b"".join(part_md5s)).hexdigest()}-{len(part_md5s)}"'


def composite_checksum(algorithm: str, part_digests: list[bytes]) -> str:
    """The COMPOSITE checksum of a multipart object: checksum of part checksums, -N."""
    hasher = new_hasher(algorithm)
    for digest in part_digests:
        hasher.update(digest)
    return f"{b64(hasher.digest())}-{len(part_digests)}"
