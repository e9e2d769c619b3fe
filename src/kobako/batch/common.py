"""Batch's shared bits: ARNs, the ClientException, time, JSON columns."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from kobako.protocol.errors import AwsError

STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
TERMINAL = ("SUCCEEDED", "FAILED")
WAITING = ("SUBMITTED", "PENDING", "RUNNABLE")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def client_error(message: str) -> AwsError:
    return AwsError("ClientException", message, 400)


def now_ms() -> int:
    return int(time.time() * 1000)


def arn(region: str, account: str, kind: str, name: str) -> str:
    return f"arn:aws:batch:{region}:{account}:{kind}/{name}"


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def check_name(name: str | None, what: str) -> str:
    if not name or not NAME_RE.match(name):
        raise client_error(
            f"{what} name should be 1-128 characters long and contain letters, numbers, "
            "hyphens and underscores, starting with a letter or number"
        )
    return name
