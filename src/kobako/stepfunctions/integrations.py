"""Task resources: a registry from resource ARN to an async callable.

Each app's Step Functions has its own registry (a child of `INTEGRATIONS`), which
`kobako.stepfunctions.connect` fills with the services of the same server
(`batch:submitJob(.sync)`, `aws-sdk:s3:*`, ...); a resource nobody registered fails
its Task with States.Runtime instead of hanging.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kobako.stepfunctions.errors import RUNTIME, StatesError


@dataclass(frozen=True)
class TaskCall:
    """What a Task state asks of its resource."""

    resource: str
    parameters: Any
    execution_arn: str
    region: str
    account_id: str
    timeout_seconds: float | None = None
    heartbeat_seconds: float | None = None
    # What this attempt recorded before a restart (a job id...), and how to record it.
    resume: dict[str, Any] | None = None
    remember: Callable[[dict[str, Any]], None] | None = None
    # A `.sync` integration reports the submitting call's answer (TaskSubmitted) here.
    submitted: Callable[[Any], None] | None = None


# Why a `.sync` integration's wait was cancelled (the message of its CancelledError):
# the execution stopped (no message), the Task timed out, or its task token was answered
# (SendTaskSuccess/Failure), in which case the job is left alone.
TIMED_OUT = "timed out"
ANSWERED = "answered"


def stop_reason(exc: BaseException, execution_arn: str) -> str | None:
    """The reason a cancelled `.sync` Task gives the job it stops; None: leave it running.

    The aborted wording is what AWS Batch shows for a job whose execution was stopped."""
    why = exc.args[0] if exc.args and isinstance(exc.args[0], str) else None
    if why == ANSWERED:
        return None
    return f"The Task state in AWS Step Functions execution [{execution_arn}] which was " \
        f"managing this resource {'timed out' if why == TIMED_OUT else 'was aborted'}"


TaskHandler = Callable[[TaskCall], Awaitable[Any]]

_STATES_ARN = re.compile(r"^arn:(aws[a-z-]*):states:[^:]*:[^:]*:")


def normalize(resource: str) -> str:
    """`arn:aws:states:REGION:ACCOUNT:x` and `arn:aws:states:::x` name the same integration."""
    return _STATES_ARN.sub(r"arn:\1:states:::", resource)


def describe(resource: str) -> tuple[str, str]:
    """(resourceType, resource) as TaskScheduled events name them."""
    text = normalize(resource)
    if text.startswith("arn:aws:states:::"):
        kind, _, name = text[len("arn:aws:states:::"):].partition(":")
        return kind[:80] or "states", (name or kind)[:80]
    parts = resource.split(":")
    if len(parts) > 5 and parts[0] == "arn":
        return parts[2][:80] or "unknown", ":".join(parts[5:])[-80:] or resource[-80:]
    return "unknown", resource[-80:] or "unknown"


class Integrations:
    """Exact resource names or fnmatch patterns, looked up here then in `parent`."""

    def __init__(self, parent: Integrations | None = None) -> None:
        self.parent = parent
        self._handlers: dict[str, TaskHandler] = {}

    def register(self, resource: str, handler: TaskHandler) -> None:
        self._handlers[normalize(resource)] = handler

    def find(self, resource: str) -> TaskHandler | None:
        name = normalize(resource)
        handler = self._handlers.get(name)
        if handler is None:
            for pattern, candidate in self._handlers.items():
                if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(name, pattern):
                    handler = candidate
                    break
        if handler is None and self.parent is not None:
            return self.parent.find(resource)
        return handler

    async def invoke(self, call: TaskCall) -> Any:
        handler = self.find(call.resource)
        if handler is None:
            raise StatesError(
                RUNTIME,
                f"kobako has no integration for the resource '{call.resource}': "
                "this service integration is not implemented.",
            )
        return await handler(call)


# Where other kobako packages register their integrations (at their build time).
INTEGRATIONS = Integrations()
