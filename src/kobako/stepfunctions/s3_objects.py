"""Raw object access to kobako's own S3 for the distributed Map (ItemReader, ResultWriter).

Goes through S3's in-process handlers (`inprocess.Peer`) so bucket checks and errors
are S3's own, but keeps bodies as bytes: an S3 inventory's `.csv.gz` files are binary,
which the aws-sdk integration (bodies as text) would mangle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.protocol.http import BodyStream, HttpResponse
from kobako.stepfunctions.inprocess import Peer


class S3Objects:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def get(self, bucket: str, key: str, region: str, account: str) -> bytes:
        result = await self.peer.call("GetObject", {"Bucket": bucket, "Key": key}, region,
                                      account)
        return await _body(result)

    async def put(self, bucket: str, key: str, body: bytes, region: str, account: str) -> None:
        await self.peer.call("PutObject", {"Bucket": bucket, "Key": key,
                                           "Body": BodyStream.of_bytes(body),
                                           "ContentType": "application/json"},
                             region, account)

    async def list(self, params: dict[str, Any], region: str,
                   account: str) -> list[dict[str, Any]]:
        """Every object of ListObjectsV2 over all pages."""
        out: list[dict[str, Any]] = []
        request = dict(params)
        while True:
            page = await self.peer.call("ListObjectsV2", request, region, account)
            if isinstance(page, HttpResponse):  # pragma: no cover - S3 answers a dict
                raise AwsError("InternalError", "unexpected ListObjectsV2 answer")
            out.extend(page.get("Contents") or [])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return out
            request["ContinuationToken"] = token


async def _body(result: Any) -> bytes:
    body = result.body if isinstance(result, HttpResponse) else result.get("Body", b"")
    if isinstance(body, bytes):
        return body
    if isinstance(body, AsyncIterator):
        return b"".join([piece async for piece in body])
    return bytes(body or b"")
