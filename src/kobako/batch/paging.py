"""Opaque page tokens for Batch's describe and list calls (an offset, encoded)."""

from __future__ import annotations

import base64

from kobako.batch.common import client_error


def offset_of(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError:
        raise client_error("Invalid nextToken") from None


def token_for(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def page_size(value: object, default: int, most: int) -> int:
    if value is None:
        return default
    size = int(str(value))
    if not 1 <= size <= most:
        raise client_error(f"maxResults must be between 1 and {most}")
    return size
