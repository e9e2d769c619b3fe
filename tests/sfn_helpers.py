"""Shared helpers for the Step Functions tests: unique names, machines, waiting."""

from __future__ import annotations

import json
import os
import time
from typing import Any

ROLE = "arn:aws:iam::000000000000:role/sfn"
_names = iter(range(1_000_000))


def unique(prefix: str) -> str:
    return f"{prefix}-h{os.getpid()}-{next(_names)}"


def machine(sfn: Any, definition: dict[str, Any] | str, **kwargs: Any) -> str:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    return str(sfn.create_state_machine(name=unique("sm"), definition=text, roleArn=ROLE,
                                        **kwargs)["stateMachineArn"])


def wait_done(sfn: Any, arn: str, deadline: float = 15.0) -> dict[str, Any]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if found["status"] != "RUNNING":
            return found
        time.sleep(0.02)
    raise AssertionError(f"execution {arn} still RUNNING after {deadline}s")


def run(sfn: Any, definition: dict[str, Any], data: Any = None,
        deadline: float = 15.0) -> dict[str, Any]:
    """Create a machine, run it on `data`, and return the finished execution."""
    arn = machine(sfn, definition)
    started = sfn.start_execution(stateMachineArn=arn, input=json.dumps(
        {} if data is None else data))
    return wait_done(sfn, started["executionArn"], deadline)


def task(resource: str, parameters: dict[str, Any] | None = None,
         **extra: Any) -> dict[str, Any]:
    """A one-Task machine."""
    state: dict[str, Any] = {"Type": "Task", "Resource": resource, "End": True, **extra}
    if parameters is not None:
        state["Parameters"] = parameters
    return {"StartAt": "T", "States": {"T": state}}


def dmap(processor_states: dict[str, Any], start: str, kind: str = "STANDARD",
         **fields: Any) -> dict[str, Any]:
    """A machine of one distributed Map state."""
    return {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": kind},
                          "StartAt": start, "States": processor_states},
        **fields}}}
