"""JSONata as a state's QueryLanguage: `{% expression %}` strings, `$states`, AWS's functions.

Expressions are compiled once per text (jsonata-python, pure Python) with the
functions Step Functions adds to JSONata ($partition, $range, $hash, $random, $uuid,
$parse). Variables and `$states` are bound per evaluation. Failures are
States.QueryEvaluationError, as in AWS.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import uuid
from collections.abc import Mapping
from typing import Any

import jsonata

from kobako.stepfunctions.errors import StatesError

QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"
_EXPRESSION = re.compile(r"\A\{%(.*)%\}\Z", re.DOTALL)
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384",
           "SHA-512": "sha512"}


class QuerySyntaxError(ValueError):
    """An expression that does not parse (a definition error)."""


def expression(value: Any) -> str | None:
    """The JSONata text inside `{% ... %}`, or None for a literal."""
    if isinstance(value, str):
        found = _EXPRESSION.match(value.strip())
        if found:
            return found.group(1).strip()
    return None


def _fail(message: str) -> StatesError:
    return StatesError(QUERY_EVALUATION_ERROR, message)


def _partition(items: Any, size: Any) -> list[Any]:
    if not isinstance(items, list) or isinstance(size, bool) or not isinstance(size, int) \
            or size < 1:
        raise _fail("$partition expects an array and a positive integer size")
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _range(start: Any, end: Any, step: Any) -> list[Any]:
    numbers = (start, end, step)
    if any(isinstance(n, bool) or not isinstance(n, int | float) for n in numbers) or not step:
        raise _fail("$range expects numeric start, end and a non-zero step")
    out: list[Any] = []
    value = start
    while (step > 0 and value <= end) or (step < 0 and value >= end):
        out.append(value)
        value += step
    return out


def _hash(data: Any, algorithm: Any = "SHA-256") -> str:
    name = _HASHES.get(str(algorithm))
    if name is None:
        raise _fail(f"$hash: unsupported algorithm {algorithm!r}; use one of "
                    f"{', '.join(_HASHES)}")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return hashlib.new(name, text.encode()).hexdigest()


def _random(seed: Any = None) -> float:
    return random.Random(seed).random() if seed is not None else random.random()


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        raise _fail("$parse expects a string of JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"$parse: {exc}") from None


@functools.cache
def compile_expression(text: str) -> jsonata.Jsonata:
    try:
        compiled = jsonata.Jsonata(text)
    except jsonata.JException as exc:
        raise QuerySyntaxError(str(exc)) from None
    compiled.register_lambda("partition", _partition)
    compiled.register_lambda("range", _range)
    compiled.register_lambda("hash", _hash)
    compiled.register_lambda("random", _random)
    compiled.register_lambda("uuid", lambda: str(uuid.uuid4()))
    compiled.register_lambda("parse", _parse)
    return compiled


def evaluate(text: str, states: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
    """The value of one expression with `$states` and the visible variables bound."""
    try:
        compiled = compile_expression(text)
    except QuerySyntaxError as exc:
        raise _fail(f"The JSONata expression '{text}' is not valid: {exc}") from None
    bindings = dict(variables)
    bindings["states"] = dict(states)
    try:
        return _plain(compiled.evaluate(states.get("input"), bindings))
    except StatesError:
        raise
    except Exception as exc:  # jsonata raises JException and Python errors alike
        raise _fail(f"An error occurred while evaluating the JSONata expression "
                    f"'{text}': {exc}") from None


def render(template: Any, states: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
    """A JSON template with `{% %}` strings anywhere in it, evaluated."""
    text = expression(template)
    if text is not None:
        return evaluate(text, states, variables)
    if isinstance(template, dict):
        return {k: render(v, states, variables) for k, v in template.items()}
    if isinstance(template, list):
        return [render(item, states, variables) for item in template]
    return template


def _plain(value: Any) -> Any:
    """JSONata sequences and whole floats as plain JSON values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    return value


def check(template: Any) -> list[str]:
    """Syntax errors of every expression in a template (definition validation)."""
    problems: list[str] = []
    text = expression(template)
    if text is not None:
        try:
            compile_expression(text)
        except QuerySyntaxError as exc:
            problems.append(f"'{text}': {exc}")
    elif isinstance(template, dict):
        for value in template.values():
            problems += check(value)
    elif isinstance(template, list):
        for value in template:
            problems += check(value)
    return problems
