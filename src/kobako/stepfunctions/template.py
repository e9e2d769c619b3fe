"""Payload templates (Parameters, ResultSelector, ItemSelector) and path reads.

A key ending in `.$` takes its value from a path on the state's input, from the
context object (`$$...`), or from an intrinsic function call.
"""

from __future__ import annotations

import json
from typing import Any

from kobako.stepfunctions import intrinsics, paths
from kobako.stepfunctions.errors import RUNTIME, StatesError


def preview(value: Any, limit: int = 1000) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


def read_path(path: str, data: Any, context: Any, field: str) -> Any:
    """Read `path` (`$...` on data, `$$...` on the context object) or fail as AWS does."""
    source, target = (context, "$" + path[2:]) if path.startswith("$$") else (data, path)
    try:
        return paths.read(target, source)
    except paths.Missing:
        raise StatesError(
            RUNTIME,
            f"The JSONPath '{path}' specified for the field '{field}' could not be found "
            f"in the input '{preview(source)}'",
        ) from None


def render(template: Any, data: Any, context: Any, field: str = "Parameters") -> Any:
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                out[key[:-2]] = resolve(value, data, context, key)
            else:
                out[key] = render(value, data, context, field)
        return out
    if isinstance(template, list):
        return [render(item, data, context, field) for item in template]
    return template


def resolve(expression: str, data: Any, context: Any, field: str) -> Any:
    """The value of one `.$` field: an intrinsic call or a path."""
    if intrinsics.looks_like_call(expression):
        call = intrinsics.parse(expression)
        return intrinsics.evaluate(call, lambda p: read_path(p, data, context, field))
    return read_path(expression, data, context, field)
