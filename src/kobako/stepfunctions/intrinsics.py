"""ASL intrinsic functions (`States.Format(...)` and friends): parse, then evaluate.

Parsing is separate from evaluation so that a definition with a malformed call is
rejected at CreateStateMachine (InvalidDefinition) rather than mid-execution.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kobako.stepfunctions import paths
from kobako.stepfunctions.errors import INTRINSIC_FAILURE, StatesError


@dataclass(frozen=True)
class Literal:
    value: Any
    raw: str = ""  # a string literal as written, brace escapes kept (for Format)


@dataclass(frozen=True)
class PathRef:
    path: str


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Literal | PathRef | Call, ...]


Node = Literal | PathRef | Call


class IntrinsicSyntaxError(ValueError):
    pass


_NAME = re.compile(r"States\.[A-Za-z0-9]+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


def looks_like_call(text: str) -> bool:
    return text.strip().startswith("States.")


@functools.cache
def parse(text: str) -> Call:
    """Parse one intrinsic call; raises IntrinsicSyntaxError saying what is wrong."""
    parser = _Parser(text.strip())
    node = parser.call()
    if parser.pos != len(parser.text):
        raise IntrinsicSyntaxError(f"Unexpected text after the call: {parser.text[parser.pos:]!r}")
    return node


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def call(self) -> Call:
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise IntrinsicSyntaxError(f"Expected an intrinsic function at {self.pos}")
        name = match.group(0)
        if name not in FUNCTIONS:
            raise IntrinsicSyntaxError(f"Unknown intrinsic function {name}")
        self.pos = match.end()
        self._skip()
        if self.text[self.pos : self.pos + 1] != "(":
            raise IntrinsicSyntaxError(f"Expected '(' after {name}")
        self.pos += 1
        args: list[Node] = []
        self._skip()
        if self.text[self.pos : self.pos + 1] == ")":
            self.pos += 1
            return Call(name, ())
        while True:
            self._skip()
            args.append(self.argument())
            self._skip()
            char = self.text[self.pos : self.pos + 1]
            self.pos += 1
            if char == ")":
                return Call(name, tuple(args))
            if char != ",":
                raise IntrinsicSyntaxError(f"Expected ',' or ')' in the arguments of {name}")

    def argument(self) -> Node:
        rest = self.text[self.pos :]
        if rest.startswith("'"):
            return self.string()
        if rest.startswith("$"):
            return self.path()
        if rest.startswith("States."):
            return self.call()
        for word, value in (("true", True), ("false", False), ("null", None)):
            if rest.startswith(word):
                self.pos += len(word)
                return Literal(value)
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            text = match.group(0)
            return Literal(float(text) if any(c in text for c in ".eE") else int(text))
        raise IntrinsicSyntaxError(f"Unexpected argument at {rest[:20]!r}")

    def string(self) -> Literal:
        self.pos += 1
        raw: list[str] = []
        plain: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                escaped = self.text[self.pos + 1]
                raw.append(char + escaped if escaped in "{}" else escaped)
                plain.append(escaped)
                self.pos += 2
                continue
            if char == "'":
                self.pos += 1
                return Literal("".join(plain), "".join(raw))
            raw.append(char)
            plain.append(char)
            self.pos += 1
        raise IntrinsicSyntaxError("Unterminated string literal")

    def path(self) -> PathRef:
        start = self.pos
        depth = 0
        quote = False
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if quote:
                if char == "\\":
                    self.pos += 1
                elif char == "'":
                    quote = False
            elif char == "'":
                quote = True
            elif char in "[(":
                depth += 1
            elif char in "])":
                if depth == 0:
                    break
                depth -= 1
            elif char == "," and depth == 0:
                break
            self.pos += 1
        path = self.text[start : self.pos].strip()
        try:
            paths.validate_path(path[1:] if path.startswith("$$") else path)
        except paths.PathError as exc:
            raise IntrinsicSyntaxError(str(exc)) from None
        return PathRef(path)


Resolver = Callable[[str], Any]


def evaluate(node: Node, resolve: Resolver) -> Any:
    """Evaluate a parsed call; `resolve` reads a `$...` or `$$...` path."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, PathRef):
        return resolve(node.path)
    args = [evaluate(arg, resolve) for arg in node.args]
    if node.name == "States.Format":
        first = node.args[0] if node.args else None
        template = first.raw if isinstance(first, Literal) and isinstance(first.value, str) \
            else args[0] if args else None
        return _format(template, args[1:])
    try:
        return FUNCTIONS[node.name](*args)
    except StatesError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as exc:
        raise StatesError(
            INTRINSIC_FAILURE, f"Invalid arguments in {node.name}: {exc}"
        ) from None


def _fail(message: str) -> StatesError:
    return StatesError(INTRINSIC_FAILURE, message)


def _format(template: Any, args: list[Any]) -> str:
    if not isinstance(template, str):
        raise _fail("The first argument of States.Format must be a string")
    out: list[str] = []
    index = 0
    pos = 0
    while pos < len(template):
        if template.startswith("\\{", pos) or template.startswith("\\}", pos):
            out.append(template[pos + 1])
            pos += 2
        elif template.startswith("{}", pos):
            if index >= len(args):
                raise _fail("States.Format has more '{}' placeholders than arguments")
            value = args[index]
            if isinstance(value, dict | list):
                raise _fail("States.Format arguments must be strings, numbers, booleans or null")
            out.append(value if isinstance(value, str) else json.dumps(value))
            index += 1
            pos += 2
        else:
            out.append(template[pos])
            pos += 1
    if index != len(args):
        raise _fail("States.Format has more arguments than '{}' placeholders")
    return "".join(out)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise _fail(f"{what} must be an integer, got {json.dumps(value)}")
    return int(value)


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(f"{what} must be an array, got {json.dumps(value)}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"{what} must be a string, got {json.dumps(value)}")
    return value


def _string_to_json(text: Any) -> Any:
    try:
        return json.loads(_str(text, "The argument of States.StringToJson"))
    except json.JSONDecodeError as exc:
        raise _fail(f"States.StringToJson could not parse its argument: {exc}") from None


def _json_to_string(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _array_partition(items: Any, size: Any) -> list[list[Any]]:
    array = _list(items, "The first argument of States.ArrayPartition")
    chunk = _int(size, "The chunk size of States.ArrayPartition")
    if chunk <= 0:
        raise _fail("The chunk size of States.ArrayPartition must be positive")
    return [array[i : i + chunk] for i in range(0, len(array), chunk)]


def _array_range(start: Any, end: Any, step: Any) -> list[int]:
    first, last, by = _int(start, "start"), _int(end, "end"), _int(step, "step")
    if by == 0:
        raise _fail("The step of States.ArrayRange must not be 0")
    values = list(range(first, last + (1 if by > 0 else -1), by))
    if len(values) > 1000:
        raise _fail("States.ArrayRange may produce at most 1000 items")
    return values


def _array_get_item(items: Any, index: Any) -> Any:
    array = _list(items, "The first argument of States.ArrayGetItem")
    position = _int(index, "The index of States.ArrayGetItem")
    if not 0 <= position < len(array):
        raise _fail(f"The index {position} is out of bounds of an array of {len(array)}")
    return array[position]


def _array_unique(items: Any) -> list[Any]:
    seen: list[str] = []
    out: list[Any] = []
    for item in _list(items, "The argument of States.ArrayUnique"):
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.append(key)
            out.append(item)
    return out


def _base64_encode(text: Any) -> str:
    value = _str(text, "The argument of States.Base64Encode")
    if len(value) > 10000:
        raise _fail("States.Base64Encode accepts at most 10000 characters")
    return base64.b64encode(value.encode()).decode()


def _base64_decode(text: Any) -> str:
    value = _str(text, "The argument of States.Base64Decode")
    if len(value) > 10000:
        raise _fail("States.Base64Decode accepts at most 10000 characters")
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _fail("The argument of States.Base64Decode is not valid base64") from None


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384",
           "SHA-512": "sha512"}


def _hash(data: Any, algorithm: Any) -> str:
    name = _HASHES.get(_str(algorithm, "The algorithm of States.Hash"))
    if name is None:
        raise _fail(f"States.Hash supports {', '.join(_HASHES)}, not {algorithm}")
    text = data if isinstance(data, str) else _json_to_string(data)
    return hashlib.new(name, text.encode()).hexdigest()


def _json_merge(left: Any, right: Any, deep: Any) -> dict[str, Any]:
    if not isinstance(left, dict) or not isinstance(right, dict):
        raise _fail("The arguments of States.JsonMerge must be objects")
    if deep is not False:
        raise _fail("States.JsonMerge supports only shallow merging: its third argument "
                    "must be false")
    return {**left, **right}


def _math_random(start: Any, end: Any, seed: Any = None) -> int:
    low, high = _int(start, "start"), _int(end, "end")
    if high <= low:
        raise _fail("The end of States.MathRandom must be greater than its start")
    generator = random.Random(_int(seed, "seed")) if seed is not None else random
    return generator.randrange(low, high)


def _math_add(left: Any, right: Any) -> int:
    return _int(left, "The first argument of States.MathAdd") + _int(
        right, "The second argument of States.MathAdd")


def _string_split(text: Any, delimiters: Any) -> list[str]:
    value = _str(text, "The first argument of States.StringSplit")
    chars = _str(delimiters, "The delimiter of States.StringSplit")
    if not chars:
        return [value]
    parts = re.split("|".join(re.escape(c) for c in chars), value)
    return [part for part in parts if part]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "States.Format": lambda *args: None,  # evaluated by `evaluate` (needs the raw text)
    "States.StringToJson": _string_to_json,
    "States.JsonToString": _json_to_string,
    "States.Array": lambda *args: list(args),
    "States.ArrayPartition": _array_partition,
    "States.ArrayContains": lambda items, value: value in _list(items, "The array"),
    "States.ArrayRange": _array_range,
    "States.ArrayGetItem": _array_get_item,
    "States.ArrayLength": lambda items: len(_list(items, "The argument")),
    "States.ArrayUnique": _array_unique,
    "States.Base64Encode": _base64_encode,
    "States.Base64Decode": _base64_decode,
    "States.Hash": _hash,
    "States.JsonMerge": _json_merge,
    "States.MathRandom": _math_random,
    "States.MathAdd": _math_add,
    "States.StringSplit": _string_split,
    "States.UUID": lambda: str(uuid.uuid4()),
}
