"""ARNs and names as Step Functions spells and checks them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kobako.protocol.errors import AwsError

_FORBIDDEN = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")


def machine_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:states:{region}:{account}:stateMachine:{name}"


def execution_arn(machine: str, name: str) -> str:
    parsed = parse(machine, "stateMachine")
    return f"arn:aws:states:{parsed.region}:{parsed.account}:execution:{parsed.name}:{name}"


@dataclass(frozen=True)
class Arn:
    region: str
    account: str
    kind: str
    name: str  # stateMachine name, or the execution's machine name
    child: str = ""  # execution name


def parse(arn: str, kind: str | None = None) -> Arn:
    """Split a states ARN; InvalidArn (AWS's wording) when it is not one of `kind`."""
    parts = arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "states" or not parts[1]:
        raise AwsError("InvalidArn", f"Invalid Arn: 'Invalid ARN prefix: {arn}'")
    found = parts[5]
    if kind is not None and found != kind:
        raise AwsError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this "
                       f"context: {found}'")
    long = found in ("execution", "mapRun", "express")  # name:child
    if (long and len(parts) != 8) or (not long and len(parts) != 7):
        raise AwsError("InvalidArn", f"Invalid Arn: 'Invalid resource name: {arn}'")
    return Arn(parts[3], parts[4], found, parts[6], parts[7] if len(parts) > 7 else "")


def check_name(name: str) -> None:
    if not 1 <= len(name) <= 80 or _FORBIDDEN.search(name):
        raise AwsError("InvalidName", f"Invalid Name: '{name}'")
