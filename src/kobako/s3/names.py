"""Bucket naming rules (general purpose buckets), as AWS documents them."""

from __future__ import annotations

import re

from kobako.protocol.errors import AwsError

_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_IP = re.compile(r"\d{1,3}(\.\d{1,3}){3}\Z")
_BAD_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BAD_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def check_bucket_name(name: str) -> None:
    if (
        not _NAME.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IP.match(name)
        or name.startswith(_BAD_PREFIXES)
        or name.endswith(_BAD_SUFFIXES)
    ):
        raise AwsError("InvalidBucketName", "The specified bucket is not valid.", 400,
                       fields={"BucketName": name})


def check_key(key: str) -> None:
    if not key:
        raise AwsError("InvalidArgument", "Object key must not be empty.", 400)
    if len(key.encode()) > 1024:
        raise AwsError("KeyTooLongError", "Your key is too long", 400)
