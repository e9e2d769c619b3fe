"""One codec per AWS protocol: parse a request into parameters, serialize results.

A codec knows the wire format (`rest-xml`, `rest-json`, `json`, `query`) and nothing
about any service: everything operation-specific comes from the botocore model.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs, parse_qsl
from xml.etree.ElementTree import Element, ParseError, XMLParser
from xml.sax.saxutils import escape

from kobako.protocol import eventstream, values
from kobako.protocol.errors import AwsError
from kobako.protocol.eventstream import EventStreamEncoder
from kobako.protocol.http import HttpRequest, HttpResponse
from kobako.protocol.routing import OperationRouter
from kobako.protocol.timestamps import format_timestamp, to_rfc822
from kobako.spec import OperationModel, ServiceModel, Shape

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

# The operation a request names, and its URI labels (REST protocols only).
Found = tuple[OperationModel, dict[str, str]]


async def _whole_body(request: HttpRequest) -> bytes:
    """The body, as the signature check already read it for a service whose bodies
    are read before dispatch, else read now."""
    if request.body_bytes is not None:
        return request.body_bytes
    return await request.body.read_all()


def parse_xml(body: bytes) -> Element:
    """Parse untrusted XML; expat refuses entity-expansion bombs by itself."""
    if b"<!DOCTYPE" in body[:4096].upper():
        raise values._malformed("document type declarations are not accepted")
    parser = XMLParser()
    try:
        parser.feed(body)
        return parser.close()
    except ParseError as exc:
        raise values._malformed(str(exc)) from None


class Codec:
    """The interface the server uses; subclasses implement one protocol each."""

    content_type = "application/json"

    def __init__(self, model: ServiceModel) -> None:
        self.model = model

    def find_operation(self, request: HttpRequest, path: str) -> Found:
        raise NotImplementedError

    async def parse(
        self, op: OperationModel, request: HttpRequest, labels: dict[str, str]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def serialize(self, op: OperationModel, output: dict[str, Any]) -> HttpResponse:
        raise NotImplementedError

    def serialize_error(self, error: AwsError, request_id: str) -> HttpResponse:
        raise NotImplementedError

    def unknown_operation(self, what: str) -> AwsError:
        return AwsError("UnknownOperationException", f"Unknown operation {what}", 400)


# ---------------------------------------------------------------- REST binding


# (member name, location, wire name, member shape); header wire names lower-cased.
# The names are interned: a dict keyed by them (the params handlers read with literal
# keys, the labels a route gives) or looked up with them (the outputs handlers build
# with literal keys) then finds a key by identity instead of comparing its characters.
_Members = list[tuple[str, str, str, Shape]]
# What makes a member's value of its text (URI label, header), given the member: None
# where the value is the text as it came (strings, which most bound members are), so
# that parsing skips the call; chosen once per member.
_Reader = Callable[[str, Shape], Any] | None
# (member name, wire name, member shape, reader)
_TextMembers = list[tuple[str, str, Shape, _Reader]]


@dataclass
class _InputPlan:
    members: _Members  # the members bound to the URI, query string or headers
    bound: set[str]  # query keys a querystring map must leave to others
    payload: str | None
    body_members: bool  # members with no location: they come from the body
    # The same members by where they come from, so that parsing looks at what the
    # request carries rather than at every member the model names.
    uri: _TextMembers = field(default_factory=list)
    query: _Members = field(default_factory=list)
    # wire name -> [(member name, shape, reader)]
    headers: dict[str, list[tuple[str, Shape, _Reader]]] = field(default_factory=dict)
    # (member name, prefix, the prefix after a newline)
    header_maps: list[tuple[str, str, str]] = field(default_factory=list)
    streams: bool = False  # the payload is a streaming blob: the request's body as it is

    @classmethod
    def of(cls, op: OperationModel) -> _InputPlan:
        shape = op.input_shape
        assert shape is not None
        members: _Members = []
        bound: set[str] = set()
        body_members = False
        for name, member in shape.members.items():
            location = str(member.serialization.get("location") or "")
            wire = str(member.serialization.get("name", name))
            if not location:
                body_members = True
                continue
            if location in ("header", "headers"):
                wire = wire.lower()
            elif location == "querystring" and member.type_name != "map":
                bound.add(wire)
            members.append((sys.intern(name), location, sys.intern(wire), member))
        bound.update(parse_qs(str(op.http.get("requestUri", "")).partition("?")[2],
                              keep_blank_values=True))
        payload = shape.serialization.get("payload")
        plan = cls(members, bound, str(payload) if payload else None, body_members)
        if payload:
            member = shape.members[str(payload)]
            plan.streams = bool(member.type_name == "blob"
                                and member.serialization.get("streaming"))
        for name, location, wire, member in members:
            if location == "uri":
                plan.uri.append((name, wire, member, _text_reader(member)))
            elif location == "querystring":
                plan.query.append((name, location, wire, member))
            elif location == "header":
                plan.headers.setdefault(wire, []).append((name, member,
                                                          _header_reader(member)))
            elif location == "headers":
                plan.header_maps.append((name, wire, "\n" + wire))
        return plan


@dataclass
class _OutputPlan:
    members: _Members  # the members that go to headers or the status code
    payload: str | None
    body_members: bool
    # name -> position in `members`: serializing looks up the few members a result
    # holds instead of walking every member of the shape.
    position: dict[str, int] = field(default_factory=dict)
    # By position: (name, location, wire name, header text writer).
    writers: list[tuple[str, str, str, Callable[[Any], str]]] = field(default_factory=list)
    status: int = 200  # the operation's responseCode

    @classmethod
    def of(cls, op: OperationModel, shape: Shape) -> _OutputPlan:
        members: _Members = []
        body_members = False
        for name, member in shape.members.items():
            location = str(member.serialization.get("location") or "")
            if not location:
                body_members = True
                continue
            wire = str(member.serialization.get("name", name))
            members.append((sys.intern(name), location, wire, member))
        payload = shape.serialization.get("payload")
        position = {name: index for index, (name, *_) in enumerate(members)}
        writers = [(name, location, wire, _header_writer(member))
                   for name, location, wire, member in members]
        return cls(members, str(payload) if payload else None, body_members, position,
                   writers, int(op.http.get("responseCode", 200)))


class RestCodec(Codec):
    """What rest-xml and rest-json share: URI labels, query string, headers, payload."""

    def __init__(self, model: ServiceModel) -> None:
        super().__init__(model)
        self._router: OperationRouter | None = None
        # What parse and serialize need of each operation's shapes, worked out once.
        self._input_plans: dict[str, _InputPlan] = {}
        self._output_plans: dict[str, _OutputPlan] = {}

    @property
    def router(self) -> OperationRouter:
        """Built on first use: a service nobody calls costs no startup time."""
        if self._router is None:
            self._router = OperationRouter(self.model)
        return self._router

    def find_operation(self, request: HttpRequest, path: str) -> Found:
        found = self.router.match(request, path)
        if found is None:
            raise self.unknown_operation(f"{request.method} {path}")
        return found

    async def parse(
        self, op: OperationModel, request: HttpRequest, labels: dict[str, str]
    ) -> dict[str, Any]:
        shape = op.input_shape
        if shape is None:
            return {}
        plan = self._input_plans.get(op.name)
        if plan is None:
            plan = self._input_plans[op.name] = _InputPlan.of(op)
        params: dict[str, Any] = {}
        payload_name = plan.payload
        for name, wire, member, read in plan.uri:
            if wire in labels:
                text = labels[wire]
                params[name] = text if read is None else read(text, member)
        if request.query_multi:
            for name, _, wire, member in plan.query:
                self._parse_query_member(request, name, wire, member, params, plan.bound)
        headers = request.headers
        bound_headers = plan.headers
        for header, text in headers.items():
            if header not in bound_headers:
                continue
            for name, member, read in bound_headers[header]:
                params[name] = text if read is None else read(text, member)
        if plan.header_maps:
            # Whether any header name starts with a prefix: one substring search of the
            # names, each after a newline (~3.5k instructions for a PUT's six headers),
            # where a startswith call per header cost ~8.5k; most requests (a PUT
            # without metadata) have none.
            names = "\n" + "\n".join(headers)
            for name, prefix, after_newline in plan.header_maps:
                if after_newline in names:
                    found = {key[len(prefix):]: value for key, value in headers.items()
                             if key.startswith(prefix)}
                    if found:
                        params[name] = found
        if payload_name and plan.streams:
            params[payload_name] = request.body
        elif payload_name:
            member = shape.members[payload_name]
            if member.type_name in ("blob", "string"):
                # Absent and empty are the same on the wire; a non-streaming payload is
                # left out then, as botocore leaves it out of the body.
                raw = await request.body.read_all()
                if raw:
                    params[payload_name] = raw if member.type_name == "blob" else raw.decode()
            else:
                raw = await request.body.read_all()
                if raw.strip():
                    params[payload_name] = self.parse_payload(raw, member)
        elif plan.body_members:
            raw = await _whole_body(request)
            if raw.strip():
                params.update(self.parse_payload(raw, shape))
        return params

    def _parse_query_member(
        self,
        request: HttpRequest,
        name: str,
        wire: str,
        member: Shape,
        params: dict[str, Any],
        bound: set[str],
    ) -> None:
        if member.type_name == "map":
            multi = member.value.type_name == "list"
            found = {
                k: (v if multi else v[0]) for k, v in request.query_multi.items() if k not in bound
            }
            if found:
                params[name] = found
        elif wire in request.query_multi:
            if member.type_name == "list":
                params[name] = [
                    values.scalar_from_text(v, member.member) for v in request.query_multi[wire]
                ]
            else:
                params[name] = values.scalar_from_text(request.query[wire], member)

    def parse_payload(self, raw: bytes, shape: Shape) -> Any:
        raise NotImplementedError

    def serialize(self, op: OperationModel, output: dict[str, Any]) -> HttpResponse:
        shape = op.output_shape
        if shape is None:
            return HttpResponse(status=int(output.get("__status", 0))
                                or int(op.http.get("responseCode", 200)))
        plan = self._output_plans.get(op.name)
        if plan is None:
            plan = self._output_plans[op.name] = _OutputPlan.of(op, shape)
        # A `__status` the output holds is set below, after any statusCode member.
        response = HttpResponse(plan.status, [])
        # The positions of the members the output holds, sorted: headers go out in the
        # model's order. Sorting plain ints, and looking up each value again, costs
        # ~1.3k instructions (GetObject) less than sorting (position, entry, value)
        # tuples. A comprehension here cost ~1.5k more than this loop.
        position = plan.position
        located = []
        for name, value in output.items():
            if value is not None and name in position:
                located.append(position[name])
        located.sort()
        writers = plan.writers
        for index in located:
            name, location, wire, write = writers[index]
            value = output[name]
            if location == "header":
                response.headers.append((wire, write(value)))
            elif location == "headers":
                response.headers.extend((wire + key, str(item)) for key, item in value.items())
            elif location == "statusCode":
                response.status = int(value)
        if "__status" in output:
            response.status = int(output["__status"])
        payload_name = plan.payload
        if payload_name:
            member = shape.members[payload_name]
            value = output.get(payload_name)
            if value is None:
                return response
            if member.type_name in ("blob", "string"):
                response.body = value.encode() if isinstance(value, str) else value
            elif member.serialization.get("eventstream"):
                # The handler gives an async iterator of events; each goes out framed
                # as it comes (the body is sent chunked).
                encoder = EventStreamEncoder(member, self._event_body, self.content_type)
                response.body = encoder.stream(value)
                response.headers.append(("Content-Type", eventstream.CONTENT_TYPE))
            else:
                root = str(member.serialization.get("name", member.name))
                response.body = self.serialize_payload(root, value, member)
                response.headers.append(("Content-Type", self.content_type))
        elif plan.body_members:
            response.body = self.serialize_payload(self.root_name(op), output, shape)
            response.headers.append(("Content-Type", self.content_type))
        return response

    @staticmethod
    def _header_text(value: Any, member: Shape) -> str:
        if member.type_name == "timestamp":
            fmt = str(member.serialization.get("timestampFormat", "rfc822"))
            return str(format_timestamp(value, fmt))
        if member.type_name == "list":
            return ",".join(values.scalar_to_text(item, member.member) for item in value)
        if member.serialization.get("jsonvalue"):
            return base64.b64encode(values.dumps(value)).decode()
        return values.scalar_to_text(value, member)

    def _event_body(self, value: Any, shape: Shape) -> bytes:
        return self.serialize_payload(str(shape.serialization.get("name", shape.name)),
                                      value, shape)

    def root_name(self, op: OperationModel) -> str:
        shape = op.output_shape
        return str(shape.serialization.get("name", shape.name)) if shape else op.name

    def serialize_payload(self, root: str, value: Any, shape: Shape) -> bytes:
        raise NotImplementedError


def _header_writer(member: Shape) -> Callable[[Any], str]:
    """What `RestCodec._header_text` does for `member`, chosen once per member: the
    common kinds (text, numbers, RFC 822 dates) go straight to their formatter."""
    kind = member.type_name
    if kind == "timestamp":
        if str(member.serialization.get("timestampFormat", "rfc822")) == "rfc822":
            return to_rfc822
    elif kind in ("string", "integer", "long") and not member.serialization.get("jsonvalue"):
        return str
    return partial(RestCodec._header_text, member=member)


def _text_reader(member: Shape) -> _Reader:
    return None if values.is_text(member) else values.scalar_from_text


def _header_reader(member: Shape) -> _Reader:
    if member.type_name == "list" or member.serialization.get("jsonvalue"):
        return _header_value
    return _text_reader(member)


def _header_value(raw: str, member: Shape) -> Any:
    """The value of a header bound to `member`, from its text."""
    if member.type_name == "list":
        return [values.scalar_from_text(part, member.member) for part in split_header_list(raw)]
    if member.serialization.get("jsonvalue"):
        return _json_header(raw)
    return values.scalar_from_text(raw, member)


def split_header_list(raw: str) -> list[str]:
    """The items of a comma-separated header; an item may be a quoted string (RFC 9110)."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in raw:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return items


def _json_header(raw: str) -> Any:
    """A `jsonvalue` header: base64 of the JSON text."""
    try:
        return json.loads(base64.b64decode(raw, validate=True))
    except (ValueError, binascii.Error):
        raise AwsError("SerializationException", "Invalid base64 JSON header value.") from None


class RestXmlCodec(RestCodec):
    content_type = "application/xml"

    def __init__(self, model: ServiceModel, root_names: dict[str, str] | None = None) -> None:
        super().__init__(model)
        self.root_names = root_names or {}
        self.xmlns = str(model.metadata.get("xmlNamespace", {}).get("uri", "")) if isinstance(
            model.metadata.get("xmlNamespace"), dict) else ""
        if not self.xmlns and model.service_name == "s3":
            self.xmlns = "http://s3.amazonaws.com/doc/2006-03-01/"

    def parse_payload(self, raw: bytes, shape: Shape) -> Any:
        return values.xml_to_value(parse_xml(raw), shape)

    def root_name(self, op: OperationModel) -> str:
        return self.root_names.get(op.name) or super().root_name(op)

    def serialize_payload(self, root: str, value: Any, shape: Shape) -> bytes:
        out: list[str] = [XML_DECLARATION]
        values.value_to_xml(root, value, shape, out, self.xmlns)
        return "".join(out).encode()

    def serialize_error(self, error: AwsError, request_id: str) -> HttpResponse:
        fields = "".join(
            f"<{k}>{escape(v)}</{k}>" for k, v in error.fields.items()
        )
        body = (
            f"{XML_DECLARATION}<Error><Code>{error.code}</Code>"
            f"<Message>{escape(error.message)}</Message>{fields}"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        headers = [("Content-Type", "application/xml"), *error.headers.items()]
        return HttpResponse(error.status, headers, body.encode())


class RestJsonCodec(RestCodec):
    content_type = "application/json"

    def parse_payload(self, raw: bytes, shape: Shape) -> Any:
        return values.json_to_value(_load_json(raw), shape)

    def serialize_payload(self, root: str, value: Any, shape: Shape) -> bytes:
        return values.dumps(values.value_to_json(value, shape))

    def serialize_error(self, error: AwsError, request_id: str) -> HttpResponse:
        return _json_error(error, "application/json")


# ---------------------------------------------------------------- JSON RPC


def _load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise AwsError("SerializationException", "The request body is not valid JSON.") from None


def _json_error(error: AwsError, content_type: str) -> HttpResponse:
    body: dict[str, Any] = {"__type": error.code, "message": error.message, **error.fields}
    headers = [
        ("Content-Type", content_type),
        ("x-amzn-ErrorType", error.code),
        *error.headers.items(),
    ]
    return HttpResponse(error.status, headers, values.dumps(body))


class JsonCodec(Codec):
    def __init__(self, model: ServiceModel) -> None:
        super().__init__(model)
        self.content_type = f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.0')}"
        self.target_prefix = str(model.metadata.get("targetPrefix", ""))

    def find_operation(self, request: HttpRequest, path: str) -> Found:
        target = request.headers.get("x-amz-target", "")
        prefix, _, name = target.rpartition(".")
        if prefix != self.target_prefix or name not in self.model.operation_names:
            raise self.unknown_operation(target or "(no X-Amz-Target)")
        return self.model.operation_model(name), {}

    async def parse(
        self, op: OperationModel, request: HttpRequest, labels: dict[str, str]
    ) -> dict[str, Any]:
        raw = await _whole_body(request)
        if op.input_shape is None:
            return {}
        parsed = values.json_to_value(_load_json(raw), op.input_shape)
        return parsed if isinstance(parsed, dict) else {}

    def serialize(self, op: OperationModel, output: dict[str, Any]) -> HttpResponse:
        body = values.value_to_json(output, op.output_shape) if op.output_shape else {}
        return HttpResponse(200, [("Content-Type", self.content_type)], values.dumps(body))

    def serialize_error(self, error: AwsError, request_id: str) -> HttpResponse:
        return _json_error(error, self.content_type)


# ---------------------------------------------------------------- query


class QueryCodec(Codec):
    content_type = "text/xml"

    def __init__(self, model: ServiceModel) -> None:
        super().__init__(model)
        self.xmlns = str(model.metadata.get("xmlNamespace", ""))

    def find_operation(self, request: HttpRequest, path: str) -> Found:
        action = request.query.get("Action", "")
        if not action and request.body_bytes:
            form = dict(parse_qsl(request.body_bytes.decode(errors="replace")))
            action = form.get("Action", "")
        if action not in self.model.operation_names:
            raise AwsError("InvalidAction", f"Could not find operation {action}", 400)
        return self.model.operation_model(action), {}

    async def parse(
        self, op: OperationModel, request: HttpRequest, labels: dict[str, str]
    ) -> dict[str, Any]:
        raw = await _whole_body(request)
        form = dict(request.query)
        form.update(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))
        if op.input_shape is None:
            return {}
        return dict(self._struct(form, "", op.input_shape))

    def _struct(self, form: dict[str, str], prefix: str, shape: Shape) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, member in shape.members.items():
            key = prefix + str(member.serialization.get("name", name))
            value = self._value(form, key, member)
            if value is not None:
                result[name] = value
        return result

    def _value(self, form: dict[str, str], key: str, shape: Shape) -> Any:
        kind = shape.type_name
        if kind == "structure":
            if not any(k.startswith(key + ".") for k in form):
                return None
            return self._struct(form, key + ".", shape)
        if kind == "list":
            # `Key.member.N`, or with the member's locationName `Key.Name.N`; a flattened
            # list is `Key.N`, or `Name.N` where its member has a locationName.
            item_name = shape.member.serialization.get("name")
            if shape.serialization.get("flattened"):
                base = key.rpartition(".")[0] + "." + item_name if item_name else key
                base = base.lstrip(".")
            else:
                base = f"{key}.{item_name or 'member'}"
            items = []
            index = 1
            while any(k == f"{base}.{index}" or k.startswith(f"{base}.{index}.") for k in form):
                items.append(self._value(form, f"{base}.{index}", shape.member))
                index += 1
            return items if items or key in form else None
        if kind == "map":
            base = key if shape.serialization.get("flattened") else key + ".entry"
            key_name = values.member_wire_name("key", shape.key)
            value_name = values.member_wire_name("value", shape.value)
            result: dict[str, Any] = {}
            index = 1
            while f"{base}.{index}.{key_name}" in form:
                result[form[f"{base}.{index}.{key_name}"]] = self._value(
                    form, f"{base}.{index}.{value_name}", shape.value
                )
                index += 1
            return result or None
        if key not in form:
            return None
        return values.scalar_from_text(form[key], shape)

    def serialize(self, op: OperationModel, output: dict[str, Any]) -> HttpResponse:
        out = [XML_DECLARATION, f'<{op.name}Response xmlns="{self.xmlns}">']
        shape = op.output_shape
        if shape is not None:
            # Members go inside the model's resultWrapper element, else straight
            # under the response element: that is where botocore looks for them.
            wrapper = shape.serialization.get("resultWrapper")
            inner: list[str] = []
            values.members_to_xml(output, shape, inner)
            body = "".join(inner)
            out.append(f"<{wrapper}>{body}</{wrapper}>" if wrapper else body)
        out.append(f"<ResponseMetadata><RequestId>{output.get('__request_id', '')}</RequestId>")
        out.append(f"</ResponseMetadata></{op.name}Response>")
        return HttpResponse(200, [("Content-Type", self.content_type)], "".join(out).encode())

    def serialize_error(self, error: AwsError, request_id: str) -> HttpResponse:
        kind = "Sender" if error.sender_fault else "Receiver"
        body = (
            f'{XML_DECLARATION}<ErrorResponse xmlns="{self.xmlns}"><Error><Type>{kind}</Type>'
            f"<Code>{error.code}</Code><Message>{escape(error.message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return HttpResponse(error.status, [("Content-Type", self.content_type)], body.encode())


def codec_for(model: ServiceModel, **options: Any) -> Codec:
    protocol = model.metadata.get("protocol")
    if protocol == "rest-xml":
        return RestXmlCodec(model, **options)
    if protocol == "rest-json":
        return RestJsonCodec(model)
    if protocol == "json":
        return JsonCodec(model)
    if protocol == "query":
        return QueryCodec(model)
    raise ValueError(f"unsupported protocol {protocol!r}")
