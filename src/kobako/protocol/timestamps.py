"""The three timestamp formats of the AWS protocols, in both directions."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from kobako.protocol.errors import AwsError


def to_iso8601(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_rfc822(value: datetime) -> str:
    return format_datetime(value.astimezone(UTC), usegmt=True)


def to_epoch(value: datetime) -> float | int:
    seconds = calendar.timegm(value.utctimetuple()) + value.microsecond / 1e6
    return int(seconds) if seconds == int(seconds) else round(seconds, 3)


def format_timestamp(value: datetime, fmt: str) -> str | float | int:
    if fmt == "rfc822":
        return to_rfc822(value)
    if fmt == "unixTimestamp":
        return to_epoch(value)
    return to_iso8601(value)


def parse_timestamp(value: str | float | int) -> datetime:
    """Parse any of the formats a client may send (epoch, ISO 8601, RFC 822)."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    text = value.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        parsed = parsedate_to_datetime(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise AwsError("InvalidArgument", f"Invalid timestamp: {text!r}", 400) from None
