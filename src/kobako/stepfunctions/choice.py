"""Choice rules: comparison operators, their *Path forms, Is* tests, And/Or/Not."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kobako.stepfunctions import paths

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}
KINDS = ("String", "Numeric", "Boolean", "Timestamp")
COMPARISONS = frozenset(
    [f"{kind}{op}" for kind in KINDS for op in _ORDER if kind != "Boolean" or op == "Equals"]
    + ["StringMatches"]
)
TESTS = frozenset({"IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"})
OPERATORS = COMPARISONS | {c + "Path" for c in COMPARISONS if c != "StringMatches"} | TESTS
COMBINATORS = ("And", "Or", "Not")

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as ASL accepts it (an uppercase T, an offset), else None."""
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def string_matches(value: str, pattern: str) -> bool:
    """`*` matches any run of characters; `\\*` and `\\\\` are literal."""
    regex: list[str] = []
    pos = 0
    while pos < len(pattern):
        char = pattern[pos]
        if char == "\\" and pos + 1 < len(pattern):
            regex.append(re.escape(pattern[pos + 1]))
            pos += 2
            continue
        regex.append(".*" if char == "*" else re.escape(char))
        pos += 1
    return re.fullmatch("".join(regex), value, re.DOTALL) is not None


def _typed(kind: str, value: Any) -> Any:
    """The value as `kind` compares it, or None when it is not of that kind."""
    if kind == "String":
        return value if isinstance(value, str) else None
    if kind == "Numeric":
        return value if _is_number(value) else None
    if kind == "Boolean":
        return value if isinstance(value, bool) else None
    return parse_timestamp(value)


def evaluate(rule: dict[str, Any], data: Any, context: Any) -> bool:
    """Does `rule` hold for `data`? A missing Variable makes comparisons false."""
    if "And" in rule:
        return all(evaluate(sub, data, context) for sub in rule["And"])
    if "Or" in rule:
        return any(evaluate(sub, data, context) for sub in rule["Or"])
    if "Not" in rule:
        return not evaluate(rule["Not"], data, context)
    variable = str(rule["Variable"])
    op = next(key for key in rule if key in OPERATORS)
    expected = rule[op]
    present, value = _lookup(variable, data, context)
    if op == "IsPresent":
        return present == bool(expected)
    if op in TESTS:
        if not present:
            return False
        checks = {
            "IsNull": value is None,
            "IsNumeric": _is_number(value),
            "IsString": isinstance(value, str),
            "IsBoolean": isinstance(value, bool),
            "IsTimestamp": parse_timestamp(value) is not None,
        }
        return checks[op] == bool(expected)
    if not present:
        return False
    if op.endswith("Path"):
        found, expected = _lookup(str(expected), data, context)
        if not found:
            return False
        op = op[: -len("Path")]
    if op == "StringMatches":
        return isinstance(value, str) and string_matches(value, str(expected))
    kind = next(k for k in KINDS if op.startswith(k))
    left, right = _typed(kind, value), _typed(kind, expected)
    if left is None or right is None:
        return False
    return _ORDER[op[len(kind):]](left, right)


def _lookup(path: str, data: Any, context: Any) -> tuple[bool, Any]:
    named = paths.variable(path)
    variables = getattr(context, "variables", None) or {}
    if named is not None and named[0] not in variables:
        return False, None
    source, target = (context, "$" + path[2:]) if path.startswith("$$") else \
        (variables[named[0]], named[1]) if named is not None else (data, path)
    try:
        return True, paths.read(target, source)
    except paths.Missing:
        return False, None
