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


def locate(path: str, data: Any, context: Any) -> tuple[Any, str]:
    """What a path reads (the input, the context object `$$`, a variable) and how."""
    if path.startswith("$$"):
        return context, "$" + path[2:]
    named = paths.variable(path)
    if named is None:
        return data, path
    variables = getattr(context, "variables", None) or {}
    if named[0] not in variables:
        raise StatesError(RUNTIME, f"The variable '${named[0]}' is not defined.")
    return variables[named[0]], named[1]


def read_path(path: str, data: Any, context: Any, field: str) -> Any:
    """Read `path` (`$...` on data, `$$...` on the context object) or fail as AWS does."""
    source, target = locate(path, data, context)
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
