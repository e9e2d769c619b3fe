"""Canonical user ids: S3's 64-hex-digit name for an account in ACLs and owners."""

from __future__ import annotations

import hashlib


def canonical_user_id(account_id: str) -> str:
    """Stable per account, as AWS's are; derived so no table is needed."""
    return hashlib.sha256(f"kobako:{account_id}".encode()).hexdigest()
