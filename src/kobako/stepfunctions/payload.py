"""Payloads as Step Functions measures them: compact JSON and the 256 KiB limit."""

from __future__ import annotations

import json
from typing import Any

from kobako.stepfunctions import errors
from kobako.stepfunctions.errors import StatesError


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def check_size(value: Any, what: str) -> None:
    if len(dumps(value).encode()) > errors.PAYLOAD_LIMIT:
        raise StatesError(
            errors.DATA_LIMIT,
            f"The state/task '{what}' returned a result with a size exceeding the maximum "
            "number of bytes service limit.",
        )
