"""The S3 bucket-policy language: validation and evaluation of one request.

Evaluation follows AWS's order: an explicit Deny wins, then an Allow; otherwise the
answer is "no opinion" and ownership or ACLs decide. Supported: Principal ("*",
account ids, account root / user ARNs), Action/NotAction and Resource/NotResource with
wildcards, and the Condition operators String*, Numeric*, Bool, IpAddress/NotIpAddress,
Arn*, Null, each with ...IfExists.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kobako.protocol.errors import AwsError

ALLOW, DENY, NEUTRAL = "Allow", "Deny", "Neutral"


@dataclass(frozen=True)
class Principal:
    """Who asks: an account and user name, or nobody (anonymous)."""

    account_id: str
    user: str

    @property
    def anonymous(self) -> bool:
        return not self.account_id


def _malformed(message: str) -> AwsError:
    return AwsError("MalformedPolicy", message, 400)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def parse_policy(text: str, bucket: str) -> dict[str, Any]:
    """Validate a policy document as PutBucketPolicy does."""
    try:
        document = json.loads(text)
    except ValueError:
        raise _malformed("Policies must be valid JSON and the first byte must be '{'") from None
    if not isinstance(document, dict) or not isinstance(document.get("Statement"), list | dict):
        raise _malformed("Missing required field Statement")
    for statement in _as_list(document["Statement"]):
        if not isinstance(statement, dict):
            raise _malformed("Statement is not an object")
        if statement.get("Effect") not in (ALLOW, DENY):
            raise _malformed("Invalid effect: " + str(statement.get("Effect")))
        if "Principal" not in statement and "NotPrincipal" not in statement:
            raise _malformed("Missing required field Principal")
        if "Action" not in statement and "NotAction" not in statement:
            raise _malformed("Missing required field Action")
        if "Resource" not in statement and "NotResource" not in statement:
            raise _malformed("Missing required field Resource")
        for action in _as_list(statement.get("Action", statement.get("NotAction"))):
            if not isinstance(action, str) or not (action == "*" or action.startswith("s3:")):
                raise _malformed("Policy has invalid action")
        for resource in _as_list(statement.get("Resource", statement.get("NotResource"))):
            if not isinstance(resource, str) or not _names_bucket(resource, bucket):
                raise _malformed("Policy has invalid resource")
    return document


def _names_bucket(resource: str, bucket: str) -> bool:
    """Whether a Resource can match this bucket or its objects (wildcards allowed)."""
    if resource == "*":
        return True
    prefix = "arn:aws:s3:::"
    if not resource.startswith(prefix):
        return False
    bucket_part = resource[len(prefix):].split("/", 1)[0]
    return _wild(bucket_part, bucket)


def _principal_matches(spec: Any, who: Principal) -> bool:
    if spec == "*":
        return True
    if not isinstance(spec, dict):
        return False
    for entry in _as_list(spec.get("AWS", [])):
        if entry == "*":
            return True
        if who.anonymous:
            continue
        if entry in (who.account_id, f"arn:aws:iam::{who.account_id}:root",
                     f"arn:aws:iam::{who.account_id}:user/{who.user}"):
            return True
    return False


def _wild(pattern: str, value: str, case: bool = True) -> bool:
    pattern = pattern.replace("[", "[[]")
    if not case:
        return fnmatch.fnmatchcase(value.lower(), pattern.lower())
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(op: str, key: str, wanted: list[Any], context: Mapping[str, str]) -> bool:
    if_exists = op.endswith("IfExists")
    base = op[: -len("IfExists")] if if_exists else op
    if base == "Null":
        missing = key not in context
        return any(str(w).lower() == str(missing).lower() for w in wanted)
    if key not in context:
        return if_exists or base.startswith(("StringNot", "NotIp", "ArnNot"))
    actual = context[key]
    checks: dict[str, Any] = {
        "StringEquals": lambda w: actual == str(w),
        "StringNotEquals": lambda w: actual != str(w),
        "StringEqualsIgnoreCase": lambda w: actual.lower() == str(w).lower(),
        "StringNotEqualsIgnoreCase": lambda w: actual.lower() != str(w).lower(),
        "StringLike": lambda w: _wild(str(w), actual),
        "StringNotLike": lambda w: not _wild(str(w), actual),
        "ArnEquals": lambda w: actual == str(w),
        "ArnLike": lambda w: _wild(str(w), actual),
        "ArnNotEquals": lambda w: actual != str(w),
        "ArnNotLike": lambda w: not _wild(str(w), actual),
        "Bool": lambda w: actual.lower() == str(w).lower(),
        "IpAddress": lambda w: _in_network(actual, str(w)),
        "NotIpAddress": lambda w: not _in_network(actual, str(w)),
        "NumericEquals": lambda w: _num(actual) == _num(w),
        "NumericNotEquals": lambda w: _num(actual) != _num(w),
        "NumericLessThan": lambda w: _num(actual) < _num(w),
        "NumericLessThanEquals": lambda w: _num(actual) <= _num(w),
        "NumericGreaterThan": lambda w: _num(actual) > _num(w),
        "NumericGreaterThanEquals": lambda w: _num(actual) >= _num(w),
    }
    check = checks.get(base)
    if check is None:
        return False  # an operator kobako does not know never grants
    negative = base.startswith(("StringNot", "NotIp", "ArnNot", "NumericNot"))
    results = [check(w) for w in wanted]
    return all(results) if negative else any(results)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _in_network(address: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _statement_applies(
    statement: dict[str, Any], who: Principal, action: str, resource: str,
    context: Mapping[str, str],
) -> bool:
    if "Principal" in statement and not _principal_matches(statement["Principal"], who):
        return False
    if "NotPrincipal" in statement and _principal_matches(statement["NotPrincipal"], who):
        return False
    if "Action" in statement and not any(
            _wild(a, action, case=False) for a in _as_list(statement["Action"])):
        return False
    if "NotAction" in statement and any(
            _wild(a, action, case=False) for a in _as_list(statement["NotAction"])):
        return False
    if "Resource" in statement and not any(
            _wild(r, resource) for r in _as_list(statement["Resource"])):
        return False
    if "NotResource" in statement and any(
            _wild(r, resource) for r in _as_list(statement["NotResource"])):
        return False
    for op, pairs in (statement.get("Condition") or {}).items():
        for key, wanted in pairs.items():
            if not _condition_holds(op, key, _as_list(wanted), context):
                return False
    return True


def evaluate(
    document: dict[str, Any] | None, who: Principal, action: str, resource: str,
    context: Mapping[str, str],
) -> str:
    """ALLOW, DENY or NEUTRAL for one request against one policy."""
    if not document:
        return NEUTRAL
    decision = NEUTRAL
    for statement in _as_list(document.get("Statement", [])):
        if _statement_applies(statement, who, action, resource, context):
            if statement["Effect"] == DENY:
                return DENY
            decision = ALLOW
    return decision
