"""The three timestamp formats of the AWS protocols, in both directions.

Handlers may give an aware or a naive `datetime` (naive means UTC, never local
time), or an epoch number or timestamp text, which is parsed first.
"""

from __future__ import annotations

import calendar
import math
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from kobako.protocol.errors import AwsError

Timestamp = datetime | int | float | str


def _utc(value: Timestamp) -> datetime:
    if not isinstance(value, datetime):
        return parse_timestamp(value)
    if value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Formatted seconds, by the UTC datetime of the whole second: a listing's objects and a
# busy server's responses share a few seconds between them. Bounded: cleared when full.
_ISO_SECONDS: dict[datetime, str] = {}
_RFC822: dict[datetime, str] = {}
_CACHE_LIMIT = 4096


def to_iso8601(value: Timestamp) -> str:
    value = _utc(value)
    second = value.replace(microsecond=0)
    text = _ISO_SECONDS.get(second)
    if text is None:
        if len(_ISO_SECONDS) >= _CACHE_LIMIT:
            _ISO_SECONDS.clear()
        text = _ISO_SECONDS[second] = value.strftime("%Y-%m-%dT%H:%M:%S.")
    return f"{text}{value.microsecond // 1000:03d}Z"


def to_rfc822(value: Timestamp) -> str:
    # A datetime is also remembered as it came (microseconds and all): an object's
    # Last-Modified, formatted on every GET, is then one lookup. Equal datetimes are the
    # same moment (aware) or the same fields (naive, meaning UTC), so share one text.
    if isinstance(value, datetime):
        text = _RFC822.get(value)
        if text is not None:
            return text
    second = _utc(value).replace(microsecond=0)
    text = _RFC822.get(second)
    if text is None:
        text = format_datetime(second, usegmt=True)
    if len(_RFC822) >= _CACHE_LIMIT:
        _RFC822.clear()
    _RFC822[second] = text
    if isinstance(value, datetime):
        _RFC822[value] = text
    return text


def to_epoch(value: Timestamp) -> float | int:
    value = _utc(value)
    seconds = calendar.timegm(value.utctimetuple()) + value.microsecond / 1e6
    return int(seconds) if seconds == int(seconds) else round(seconds, 3)


def format_timestamp(value: Timestamp, fmt: str) -> str | float | int:
    if fmt == "rfc822":
        return to_rfc822(value)
    if fmt == "unixTimestamp":
        return to_epoch(value)
    return to_iso8601(value)


def _invalid(value: object) -> AwsError:
    return AwsError("InvalidArgument", f"Invalid timestamp: {value!r}", 400)


def _from_epoch(seconds: float) -> datetime:
    if not math.isfinite(seconds):
        raise _invalid(seconds)
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise _invalid(seconds) from None


def parse_timestamp(value: str | float | int) -> datetime:
    """Parse any of the formats a client may send (epoch, ISO 8601, RFC 822)."""
    if isinstance(value, bool):
        raise _invalid(value)
    if isinstance(value, int | float):
        return _from_epoch(value)
    if not isinstance(value, str):
        raise _invalid(value)
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return _from_epoch(seconds)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        pass
    try:
        parsed = parsedate_to_datetime(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError):
        raise _invalid(text) from None
