"""application/vnd.amazon.eventstream: the framing of event-stream responses.

An operation whose output payload is a structure marked `eventstream` in the botocore
model (SageMaker's InvokeEndpointWithResponseStream, S3 SelectObjectContent...) answers
with a sequence of binary messages instead of one body. Each message is a prelude
(total length, headers length, CRC32 of those 8 bytes), typed headers, the payload and
a CRC32 of everything before it. What goes in the headers and payload is decided by
the model: the union member's name is `:event-type`; `eventheader` members become
headers; an `eventpayload` member is the payload as it is (blob, string) or serialized
(structure); without one, the event's other members are the serialized payload.
Members marked `exception` go out as `:message-type: exception` messages, which
botocore raises as EventStreamError with that code.
"""

from __future__ import annotations

import datetime
import logging
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.spec import Shape

log = logging.getLogger("kobako")

CONTENT_TYPE = "application/vnd.amazon.eventstream"

# Header value types of the format (the ones kobako sends).
_BOOL_TRUE, _BOOL_FALSE, _INT32, _INT64, _BYTES, _STRING, _TIMESTAMP = 0, 1, 4, 5, 6, 7, 8

HeaderValue = str | bytes | bool | int | datetime.datetime
# Serializes a structure value to a protocol's body (JSON for rest-json, XML for rest-xml).
BodySerializer = Callable[[Any, Shape], bytes]


def _header(name: str, value: HeaderValue) -> bytes:
    raw = name.encode()
    head = struct.pack(">B", len(raw)) + raw
    if isinstance(value, bool):
        return head + struct.pack(">B", _BOOL_TRUE if value else _BOOL_FALSE)
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return head + struct.pack(">Bi", _INT32, value)
        return head + struct.pack(">Bq", _INT64, value)
    if isinstance(value, datetime.datetime):
        return head + struct.pack(">Bq", _TIMESTAMP, int(value.timestamp() * 1000))
    data = value if isinstance(value, bytes) else value.encode()
    kind = _BYTES if isinstance(value, bytes) else _STRING
    return head + struct.pack(">BH", kind, len(data)) + data


def encode_message(headers: dict[str, HeaderValue], payload: bytes) -> bytes:
    """One framed message: prelude, prelude CRC, headers, payload, message CRC."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


class EventStreamEncoder:
    """Encodes the events of one `eventstream` union shape, as the model describes them.

    Events are dicts with one key, the union member's name: {"PayloadPart": {"Bytes":
    b"..."}}. `body` serializes a structure the way the service's protocol does."""

    def __init__(self, shape: Shape, body: BodySerializer, body_type: str) -> None:
        self.shape = shape
        self.body = body
        self.body_type = body_type

    def encode(self, event: dict[str, Any]) -> bytes:
        (name, value), = event.items()
        member = self.shape.members[name]
        if member.metadata.get("exception"):
            return encode_message({":message-type": "exception", ":exception-type": name,
                                   ":content-type": self.body_type},
                                  self.body(value or {}, member))
        headers: dict[str, HeaderValue] = {":message-type": "event", ":event-type": name}
        payload: bytes | None = None
        rest: dict[str, Any] = {}
        for field, field_shape in member.members.items():
            item = (value or {}).get(field)
            if item is None:
                continue
            if field_shape.serialization.get("eventheader"):
                headers[field] = item
            elif field_shape.serialization.get("eventpayload"):
                payload, kind = self._payload(item, field_shape)
                headers[":content-type"] = kind
            else:
                rest[field] = item
        if payload is None:
            payload = self.body(rest, member) if member.members else b""
            if member.members:
                headers[":content-type"] = self.body_type
        return encode_message(headers, payload)

    def _payload(self, item: Any, shape: Shape) -> tuple[bytes, str]:
        if shape.type_name == "blob":
            return (item if isinstance(item, bytes) else bytes(item)), "application/octet-stream"
        if shape.type_name == "string":
            return str(item).encode(), "text/plain"
        return self.body(item, shape), self.body_type

    def error(self, error: AwsError) -> bytes:
        """An error in mid-stream: the modelled exception event of that code, else an
        unmodelled `:message-type: error` message."""
        member = self.shape.members.get(error.code)
        if member is not None and member.metadata.get("exception"):
            return self.encode({error.code: {"Message": error.message, **error.fields}})
        return encode_message({":message-type": "error", ":error-code": error.code,
                               ":error-message": error.message}, b"")

    async def stream(self, events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
        """The response body: one message per event, as the events come. An AwsError
        raised by `events` ends the stream with its error message (the HTTP status is
        sent by then); any other failure ends it with an InternalFailure error."""
        try:
            async for event in events:
                yield self.encode(event)
        except AwsError as error:
            yield self.error(error)
        except Exception:
            log.exception("event stream failed")
            yield self.error(AwsError("InternalFailure", "The stream failed inside kobako.",
                                      500))
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()
