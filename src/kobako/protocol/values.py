"""Convert shape-typed values between Python and the XML / JSON wire forms.

Handlers see plain Python: str, int, float, bool, bytes, datetime, list, dict
(structures keyed by member name). These walkers follow botocore `Shape`s, so every
operation of every service is covered by the same few functions.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

from kobako.protocol.errors import AwsError
from kobako.protocol.timestamps import format_timestamp, parse_timestamp
from kobako.spec import Shape

_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
_INTEGERS = ("integer", "long", "short", "byte")
_SPECIAL_FLOATS = ("NaN", "Infinity", "-Infinity")
# A bare CR in XML text reads back as LF; as a character reference it survives.
_XML_TEXT = {"\r": "&#13;"}


def _malformed(message: str) -> AwsError:
    return AwsError(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our "
        f"published schema ({message})",
        400,
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def member_wire_name(name: str, shape: Shape) -> str:
    return str(shape.serialization.get("name", name))


# The kinds `scalar_from_text` converts; it gives back the text of any other kind.
_CONVERTED_KINDS = frozenset((*_INTEGERS, "float", "double", "boolean", "timestamp", "blob"))


def is_text(shape: Shape) -> bool:
    """Whether `scalar_from_text` gives the text back unchanged for `shape` (a string,
    an enum): request parsers, deciding this once per member, skip the call."""
    return shape.type_name not in _CONVERTED_KINDS


def scalar_from_text(text: str, shape: Shape) -> Any:
    """A scalar from its text form (XML text, header, query string)."""
    kind = shape.type_name
    try:
        if kind in _INTEGERS:
            return int(text)
        if kind in ("float", "double"):
            return float(text)
        if kind == "boolean":
            lowered = text.strip().lower()
            if lowered not in ("true", "false"):
                raise ValueError(text)
            return lowered == "true"
        if kind == "timestamp":
            return parse_timestamp(text)
        if kind == "blob":
            return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise AwsError("InvalidArgument", f"Invalid value {text!r} for a {kind}.", 400) from None
    return text


def scalar_to_text(value: Any, shape: Shape, default_ts: str = "iso8601") -> str:
    kind = shape.type_name
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        fmt = str(shape.serialization.get("timestampFormat", default_ts))
        return str(format_timestamp(value, fmt))
    if kind == "blob":
        raw = value if isinstance(value, bytes) else str(value).encode()
        return base64.b64encode(raw).decode()
    return str(value)


# ---------------------------------------------------------------- XML, in


def xml_to_value(elem: Element, shape: Shape) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return _xml_to_struct(elem, shape)
    if kind == "list":
        item = shape.member
        item_name = member_wire_name("member", item)
        return [xml_to_value(child, item) for child in elem if _local(child.tag) == item_name]
    if kind == "map":
        return _xml_to_map(list(elem), shape, "entry")
    return scalar_from_text(elem.text or "", shape)


def _xml_to_map(entries: list[Element], shape: Shape, entry_name: str) -> dict[str, Any]:
    key_name = member_wire_name("key", shape.key)
    value_name = member_wire_name("value", shape.value)
    result: dict[str, Any] = {}
    for entry in entries:
        if _local(entry.tag) != entry_name:
            continue
        key = value = None
        for part in entry:
            if _local(part.tag) == key_name:
                key = part.text or ""
            elif _local(part.tag) == value_name:
                value = xml_to_value(part, shape.value)
        if key is not None:
            result[key] = value
    return result


def _xml_to_struct(elem: Element, shape: Shape) -> dict[str, Any]:
    children: dict[str, list[Element]] = {}
    for child in elem:
        children.setdefault(_local(child.tag), []).append(child)
    result: dict[str, Any] = {}
    for name, member in shape.members.items():
        if member.serialization.get("location"):
            continue
        wire = member_wire_name(name, member)
        if member.serialization.get("xmlAttribute"):
            attr = elem.get(_XSI + wire.split(":")[-1]) if ":" in wire else elem.get(wire)
            if attr is not None:
                result[name] = attr
            continue
        found = children.get(wire)
        if not found and member.type_name == "list" and member.serialization.get("flattened"):
            # Responses name flattened items after the list member's locationName;
            # accept requests that do the same.
            found = children.get(str(member.member.serialization.get("name", wire)))
        if not found:
            continue
        if member.type_name == "list" and member.serialization.get("flattened"):
            result[name] = [xml_to_value(child, member.member) for child in found]
        elif member.type_name == "map" and member.serialization.get("flattened"):
            result[name] = _xml_to_map(found, member, wire)
        else:
            result[name] = xml_to_value(found[0], member)
    return result


# ---------------------------------------------------------------- XML, out


def _text(value: str) -> str:
    """XML text: escape only when there is something to escape (the common case is not)."""
    if "&" in value or "<" in value or ">" in value or "\r" in value:
        return escape(value, _XML_TEXT)
    return value


# (member name, wire name, member shape, how: 0 element, 1 attribute, 2 flattened list)
_Plan = list[tuple[str, str, Shape, int]]
# Shape -> its structure plan; the shape is kept beside it so that its id stays unique.
_PLANS: dict[int, tuple[Shape, _Plan]] = {}


def _plan(shape: Shape) -> _Plan:
    """The members of a structure that go into its XML, computed once per shape."""
    cached = _PLANS.get(id(shape))
    if cached is not None and cached[0] is shape:
        return cached[1]
    plan: _Plan = []
    for member_name, member in shape.members.items():
        if member.serialization.get("location"):
            continue
        wire = member_wire_name(member_name, member)
        if member.serialization.get("xmlAttribute"):
            plan.append((member_name, wire, member, 1))
        elif member.serialization.get("flattened") and member.type_name == "list":
            # botocore names a flattened list's items after its member's locationName.
            plan.append((member_name, str(member.member.serialization.get("name", wire)),
                         member, 2))
        else:
            plan.append((member_name, wire, member, 0))
    _PLANS[id(shape)] = (shape, plan)
    return plan


def value_to_xml(name: str, value: Any, shape: Shape, out: list[str], xmlns: str = "") -> None:
    """Append `<name>value</name>` for a shape-typed value to `out`."""
    kind = shape.type_name
    if kind == "structure":
        mark = len(out)
        out.append("")  # the start tag, once the attributes are known
        attrs = members_to_xml(value, shape, out)
        if xmlns:
            attrs = f' xmlns="{xmlns}"' + attrs
        out[mark] = f"<{name}{attrs}>"
        out.append(f"</{name}>")
    elif kind == "list":
        item_shape = shape.member
        item_name = member_wire_name("member", item_shape)
        out.append(f"<{name}>")
        for item in value:
            value_to_xml(item_name, item, item_shape, out)
        out.append(f"</{name}>")
    elif kind == "map":
        key_name = member_wire_name("key", shape.key)
        value_name = member_wire_name("value", shape.value)
        out.append(f"<{name}>")
        for key, item in value.items():
            out.append(f"<entry><{key_name}>{_text(str(key))}</{key_name}>")
            value_to_xml(value_name, item, shape.value, out)
            out.append("</entry>")
        out.append(f"</{name}>")
    elif kind == "string":
        out.append(f"<{name}>{_text(str(value))}</{name}>")
    else:
        out.append(f"<{name}>{_text(scalar_to_text(value, shape))}</{name}>")


def members_to_xml(value: dict[str, Any], shape: Shape, out: list[str]) -> str:
    """Append a structure's member elements to `out`; return its XML attributes' text."""
    if not isinstance(value, dict):
        return ""
    attrs = ""
    for member_name, wire, member, how in _plan(shape):
        member_value = value.get(member_name)
        if member_value is None:
            continue
        if how == 0:
            value_to_xml(wire, member_value, member, out)
        elif how == 1:
            if wire.startswith("xsi:"):
                attrs += ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            attrs += f" {wire}={quoteattr(str(member_value))}"
        else:
            for item in member_value:
                value_to_xml(wire, item, member.member, out)
    return attrs


# ---------------------------------------------------------------- JSON


def json_to_value(value: Any, shape: Shape) -> Any:
    """A JSON-decoded value into handler form (timestamps, blobs decoded)."""
    if value is None or shape.metadata.get("document"):
        return value  # a document is free-form JSON, as is
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise AwsError("SerializationException", f"Expected an object for {shape.name}.")
        result: dict[str, Any] = {}
        for name, member in shape.members.items():
            wire = str(member.serialization.get("name", name))
            # rest-json members bound to the URI or headers never come from the body.
            if wire in value and not member.serialization.get("location"):
                result[name] = json_to_value(value[wire], member)
        return result
    if kind == "list":
        if not isinstance(value, list):
            raise AwsError("SerializationException", f"Expected a list for {shape.name}.")
        return [json_to_value(item, shape.member) for item in value]
    if kind == "map":
        if not isinstance(value, dict):
            raise AwsError("SerializationException", f"Expected a map for {shape.name}.")
        return {key: json_to_value(item, shape.value) for key, item in value.items()}
    if kind == "timestamp":
        return parse_timestamp(value)
    if kind == "blob":
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except binascii.Error:
                raise AwsError("SerializationException", "Invalid base64 blob.") from None
        raise AwsError("SerializationException", "Expected a base64 string for a blob.")
    if kind in _INTEGERS and (isinstance(value, bool) or not isinstance(value, int)):
        raise AwsError("SerializationException", f"Expected an integer, got {value!r}.")
    if kind in ("float", "double"):
        if isinstance(value, str) and value in _SPECIAL_FLOATS:
            return float(value)  # JSON has no NaN or infinities: clients send these strings
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AwsError("SerializationException", f"Expected a number, got {value!r}.")
    if kind == "string" and not isinstance(value, str):
        raise AwsError("SerializationException", f"Expected a string, got {value!r}.")
    if kind == "boolean" and not isinstance(value, bool):
        raise AwsError("SerializationException", f"Expected a boolean, got {value!r}.")
    return value


def value_to_json(value: Any, shape: Shape) -> Any:
    """A handler value into its JSON-encodable wire form."""
    kind = shape.type_name
    if shape.metadata.get("document"):
        return value
    if kind == "structure":
        result: dict[str, Any] = {}
        for name, member in shape.members.items():
            item = value.get(name)
            if item is None or member.serialization.get("location"):
                continue
            result[str(member.serialization.get("name", name))] = value_to_json(item, member)
        return result
    if kind == "list":
        return [value_to_json(item, shape.member) for item in value]
    if kind == "map":
        return {key: value_to_json(item, shape.value) for key, item in value.items()}
    if kind == "timestamp":
        fmt = str(shape.serialization.get("timestampFormat", "unixTimestamp"))
        return format_timestamp(value, fmt)
    if kind == "blob":
        raw = value if isinstance(value, bytes) else str(value).encode()
        return base64.b64encode(raw).decode()
    if kind in ("float", "double") and isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
