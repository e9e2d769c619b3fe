"""JSONPath as ASL uses it: Paths to read (InputPath, `.$` values, Choice Variable)
and Reference Paths to write (ResultPath).

A Reference Path (`$.a.b[0]`, `$['a b']`) names one node; it is evaluated here so
that ResultPath can create missing objects. Any other path (filters, wildcards,
slices, `..`) goes to jsonpath-ng and always yields a list, as in AWS.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext.parser import parse as jsonpath_parse

from kobako.stepfunctions.errors import RESULT_PATH_MATCH_FAILURE, StatesError

Step = str | int

_FIELD = re.compile(r"\.([^.\[\]\s'\"*()@?,:]+)")
_INDEX = re.compile(r"\[(\d+)\]")
_QUOTED = re.compile(r"\[\s*'((?:[^'\\]|\\.)*)'\s*\]")


_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def variable(path: str) -> tuple[str, str] | None:
    """(name, the path inside it) for a workflow-variable path such as `$order.id`."""
    found = _VARIABLE.match(path)
    if found is None:
        return None
    return found.group(1), "$" + path[found.end():]


class PathError(ValueError):
    """A path that is not valid JSONPath."""


class Missing(LookupError):
    """A definite path names a node that is not there."""


@functools.cache
def reference_steps(path: str) -> tuple[Step, ...] | None:
    """The steps of a Reference Path, or None when `path` is not one."""
    if not path.startswith("$"):
        return None
    steps: list[Step] = []
    pos = 1
    while pos < len(path):
        for pattern in (_FIELD, _INDEX, _QUOTED):
            match = pattern.match(path, pos)
            if match:
                text = match.group(1)
                if pattern is _INDEX:
                    steps.append(int(text))
                elif pattern is _QUOTED:
                    steps.append(re.sub(r"\\(.)", r"\1", text))
                else:
                    steps.append(text)
                pos = match.end()
                break
        else:
            return None
    return tuple(steps)


@functools.cache
def _compiled(path: str) -> Any:
    try:
        return jsonpath_parse(path)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
        raise PathError(f"Invalid JSONPath {path!r}: {exc}") from None


def validate_path(path: str) -> None:
    """Raise PathError when `path` is not a usable JSONPath (definition checks)."""
    if not path.startswith("$"):
        raise PathError(f"The value for the field must start with '$': {path!r}")
    named = variable(path)
    if named is not None:
        path = named[1]
    if reference_steps(path) is None:
        _compiled(path)


def validate_reference_path(path: str) -> None:
    if reference_steps(path) is None:
        raise PathError(f"The value {path!r} is not a valid Reference Path")


def read(path: str, data: Any) -> Any:
    """Evaluate `path` on `data`; raises Missing when a definite path finds nothing."""
    steps = reference_steps(path)
    if steps is not None:
        node = data
        for step in steps:
            if isinstance(step, int):
                if not isinstance(node, list) or step >= len(node):
                    raise Missing(path)
                node = node[step]
            else:
                if not isinstance(node, dict) or step not in node:
                    raise Missing(path)
                node = node[step]
        return node
    return [match.value for match in _compiled(path).find(data)]


def exists(path: str, data: Any) -> bool:
    try:
        found = read(path, data)
    except Missing:
        return False
    return reference_steps(path) is not None or bool(found)


def write(path: str, target: Any, value: Any) -> Any:
    """Place `value` at a Reference Path inside a copy of `target` (ResultPath)."""
    steps = reference_steps(path)
    if steps is None:
        raise PathError(f"The value {path!r} is not a valid Reference Path")
    if not steps:
        return value
    root = json.loads(json.dumps(target))
    if not isinstance(root, dict):
        root_kind = type(target).__name__
        raise StatesError(
            RESULT_PATH_MATCH_FAILURE,
            f"Unable to apply ResultPath {path!r} to input of type {root_kind}: "
            "the input is not a JSON object.",
        )
    node: Any = root
    for position, step in enumerate(steps):
        last = position == len(steps) - 1
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                raise StatesError(
                    RESULT_PATH_MATCH_FAILURE,
                    f"Unable to apply ResultPath {path!r}: index {step} not found.",
                )
            if last:
                node[step] = value
            else:
                node = node[step]
            continue
        if not isinstance(node, dict):
            raise StatesError(
                RESULT_PATH_MATCH_FAILURE,
                f"Unable to apply ResultPath {path!r}: {step!r} is not in an object.",
            )
        if last:
            node[step] = value
        else:
            if not isinstance(node.get(step), dict | list):
                node[step] = {}
            node = node[step]
    return root
