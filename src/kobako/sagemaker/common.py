"""SageMaker's shared bits: its errors, ARNs, names, time, and list paging/sorting.

Error codes follow botocore's `sagemaker` model (ResourceNotFound, ResourceInUse,
ResourceLimitExceeded) and, where the model names none, what AWS answers on the
wire (ValidationException with AWS's own messages, which the SageMaker SDK matches).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kobako.protocol.errors import AwsError

NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
S3_URI = re.compile(r"^s3://([^/]+)/?(.*)$")


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message, 400)


def not_found(message: str = "Requested resource not found.") -> AwsError:
    return AwsError("ResourceNotFound", message, 400)


def in_use(message: str) -> AwsError:
    return AwsError("ResourceInUse", message, 400)


def arn(region: str, account: str, kind: str, name: str) -> str:
    """SageMaker ARNs carry the name lower-cased, as AWS writes them."""
    return f"arn:aws:sagemaker:{region}:{account}:{kind}/{name.lower()}"


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise validation(
            f"1 validation error detected: Value '{name}' at '{what}' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: "
            "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
        )
    return name


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key or prefix) of an s3:// URI."""
    found = S3_URI.match(uri or "")
    if not found:
        raise validation(f"Invalid S3 URI: {uri!r}")
    return found.group(1), found.group(2)


def now() -> float:
    return round(time.time(), 3)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def epoch(value: Any) -> float | None:
    """A request timestamp (datetime after parsing) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def offset_of(token: Any) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(str(token).encode()).decode())
    except ValueError:
        raise validation("Invalid pagination token.") from None


def token_for(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def page(items: list[dict[str, Any]], params: dict[str, Any], key: str,
         summary: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """One page of `items` (already filtered and sorted) under `key`, with NextToken."""
    size = int(params.get("MaxResults") or 10)
    if not 1 <= size <= 100:
        raise validation("MaxResults must be between 1 and 100.")
    start = offset_of(params.get("NextToken"))
    chunk = items[start:start + size]
    out: dict[str, Any] = {key: [summary(item) for item in chunk]}
    if start + size < len(items):
        out["NextToken"] = token_for(start + size)
    return out


def filter_sort(items: list[dict[str, Any]], params: dict[str, Any], *, name_key: str,
                status_key: str | None = None, default_order: str = "Descending"
                ) -> list[dict[str, Any]]:
    """Apply the filters every SageMaker List* call shares, then SortBy / SortOrder."""
    def keep(item: dict[str, Any]) -> bool:
        checks: list[tuple[str, str, Callable[[float, float], bool]]] = [
            ("CreationTimeAfter", "CreationTime", lambda v, b: v > b),
            ("CreationTimeBefore", "CreationTime", lambda v, b: v < b),
            ("LastModifiedTimeAfter", "LastModifiedTime", lambda v, b: v > b),
            ("LastModifiedTimeBefore", "LastModifiedTime", lambda v, b: v < b),
        ]
        for param, field, test in checks:
            bound = epoch(params.get(param))
            if bound is not None and not test(float(item.get(field) or 0), bound):
                return False
        contains = params.get("NameContains")
        if contains and str(contains).lower() not in str(item[name_key]).lower():
            return False
        wanted = params.get("StatusEquals")
        return not (wanted and status_key and item.get(status_key) != wanted)

    kept = [item for item in items if keep(item)]
    sort_by = str(params.get("SortBy") or "CreationTime")
    field = {"Name": name_key, "Status": status_key or name_key}.get(sort_by, "CreationTime")
    descending = str(params.get("SortOrder") or default_order) == "Descending"
    kept.sort(key=lambda item: (item.get(field) or 0, item[name_key]), reverse=descending)
    return kept
