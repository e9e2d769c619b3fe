"""CloudWatch Logs filter patterns for unstructured text.

Supported: plain terms (all must occur), quoted phrases, `?term` (at least one of
the `?` terms), `-term` (must not occur); matching is case-sensitive as in AWS.
JSON (`{ ... }`) and space-delimited (`[ ... ]`) patterns are refused rather than
silently mismatched.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from kobako.logs.store import invalid

Matcher = Callable[[str], bool]


def compile_pattern(pattern: str | None) -> Matcher:
    text = (pattern or "").strip()
    if not text or text == '""':
        return lambda message: True
    if text[0] in "{[":
        raise invalid("kobako supports only term and phrase filter patterns, not JSON or "
                      "space-delimited patterns: " + text)
    try:
        tokens = shlex.split(text, posix=True)
    except ValueError:
        raise invalid("Invalid filter pattern: unbalanced quotes") from None
    required: list[str] = []
    optional: list[str] = []
    excluded: list[str] = []
    for token in tokens:
        if token.startswith("?") and len(token) > 1:
            optional.append(token[1:])
        elif token.startswith("-") and len(token) > 1:
            excluded.append(token[1:])
        elif token:
            required.append(token)

    def match(message: str) -> bool:
        if any(term not in message for term in required):
            return False
        if any(term in message for term in excluded):
            return False
        return not optional or any(term in message for term in optional)

    return match
