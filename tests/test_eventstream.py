"""The event-stream encoder, read back by botocore's own EventStream parser."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from botocore.eventstream import (
    ChecksumMismatch,
    EventStream,
    EventStreamBuffer,
    EventStreamError,
)
from botocore.parsers import EventStreamJSONParser, EventStreamXMLParser

from kobako.protocol.codecs import RestJsonCodec, RestXmlCodec
from kobako.protocol.errors import AwsError
from kobako.protocol.eventstream import encode_message
from kobako.spec import service_model


class _Raw:
    """What EventStream reads from: the body in arbitrary pieces."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, size

    def stream(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.size):
            yield self.data[start:start + self.size]

    def close(self) -> None:
        pass


def _body(service: str, operation: str, events: list[dict[str, Any]],
          fail: AwsError | None = None) -> tuple[bytes, Any, dict[str, str]]:
    """Serialize `events` (then `fail`, raised mid-stream) through the service's codec."""
    model = service_model(service)
    codec = RestXmlCodec(model) if model.metadata["protocol"] == "rest-xml" \
        else RestJsonCodec(model)
    op = model.operation_model(operation)

    async def produce() -> AsyncIterator[dict[str, Any]]:
        for event in events:
            yield event
        if fail is not None:
            raise fail

    async def collect() -> tuple[bytes, dict[str, str]]:
        response = codec.serialize(op, {"Body": produce(), "Payload": produce(),
                                        "ContentType": "text/plain"})
        assert not isinstance(response.body, bytes)
        chunks = [piece async for piece in response.body]
        return b"".join(chunks), dict(response.headers)

    data, headers = asyncio.run(collect())
    return data, op, headers


def _parse(data: bytes, op: Any, parser: Any, size: int) -> list[dict[str, Any]]:
    member = op.output_shape.members[op.output_shape.serialization["payload"]]
    return list(EventStream(_Raw(data, size), member, parser, op.name))


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_sagemaker_payload_parts_read_back_by_botocore(size: int) -> None:
    parts = [b"first", b"", b"\x00\xff binary", b"x" * 70_000]
    data, op, headers = _body("sagemaker-runtime", "InvokeEndpointWithResponseStream",
                              [{"PayloadPart": {"Bytes": p}} for p in parts])
    assert headers["Content-Type"] == "application/vnd.amazon.eventstream"
    assert headers["X-Amzn-SageMaker-Content-Type"] == "text/plain"
    events = _parse(data, op, EventStreamJSONParser(), size)
    assert events == [{"PayloadPart": {"Bytes": p}} for p in parts]
    messages = list(_messages(data))
    assert messages[0].headers == {
        ":message-type": "event", ":event-type": "PayloadPart",
        ":content-type": "application/octet-stream"}


def _messages(data: bytes) -> Iterator[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    yield from buffer


def test_modelled_exception_ends_the_stream_as_botocore_raises_it() -> None:
    error = AwsError("ModelStreamError", "the model went away", 424,
                     fields={"ErrorCode": "StreamBroken"})
    data, op, _ = _body("sagemaker-runtime", "InvokeEndpointWithResponseStream",
                        [{"PayloadPart": {"Bytes": b"half"}}], fail=error)
    stream = iter(EventStream(_Raw(data, 5), op.output_shape.members["Body"],
                              EventStreamJSONParser(), op.name))
    assert next(stream) == {"PayloadPart": {"Bytes": b"half"}}
    with pytest.raises(EventStreamError) as raised:
        next(stream)
    assert raised.value.response["Error"] == {"Code": "ModelStreamError",
                                              "Message": "the model went away"}
    last = list(_messages(data))[-1]
    assert last.headers[":message-type"] == "exception"
    assert last.headers[":exception-type"] == "ModelStreamError"
    assert b'"ErrorCode": "StreamBroken"' in last.payload or \
        b'"ErrorCode":"StreamBroken"' in last.payload


def test_unmodelled_error_and_unexpected_failure() -> None:
    data, op, _ = _body("sagemaker-runtime", "InvokeEndpointWithResponseStream", [],
                        fail=AwsError("Throttling", "slow down"))
    with pytest.raises(EventStreamError) as raised:
        _parse(data, op, EventStreamJSONParser(), 3)
    assert raised.value.response["Error"] == {"Code": "Throttling", "Message": "slow down"}

    data, op, _ = _body("sagemaker-runtime", "InvokeEndpointWithResponseStream", [],
                        fail=AwsError("InternalStreamFailure", "try again", 500))
    with pytest.raises(EventStreamError) as raised:
        _parse(data, op, EventStreamJSONParser(), 3)
    assert raised.value.response["Error"]["Code"] == "InternalStreamFailure"


def test_rest_xml_events_with_structure_payloads() -> None:
    """S3 SelectObjectContent: blob payload, structure payload (XML), no-member End."""
    events = [{"Records": {"Payload": b"a,b\n"}},
              {"Stats": {"Details": {"BytesScanned": 10, "BytesProcessed": 10,
                                     "BytesReturned": 4}}},
              {"End": {}}]
    data, op, _ = _body("s3", "SelectObjectContent", events)
    parsed = _parse(data, op, EventStreamXMLParser(), 11)
    assert parsed == events


def test_header_types_and_crcs() -> None:
    stamp = datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)
    data = encode_message({"s": "text", "b": b"\x01", "t": True, "f": False, "i": 7,
                           "l": 2**40, "ts": stamp}, b"payload")
    (message,) = list(_messages(data))
    assert message.payload == b"payload"
    assert message.headers == {"s": "text", "b": b"\x01", "t": True, "f": False, "i": 7,
                               "l": 2**40, "ts": int(stamp.timestamp() * 1000)}
    broken = bytearray(data)
    broken[-6] ^= 1
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(broken))
    with pytest.raises(ChecksumMismatch):
        list(buffer)
