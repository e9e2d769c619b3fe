"""Errors of the States Language, as an execution sees them (not API errors).

A `StatesError` carries the `Error` / `Cause` pair that Retry and Catch match on and
that ends up in TaskFailed / ExecutionFailed events; the names are AWS's own.
"""

from __future__ import annotations

ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
RUNTIME = "States.Runtime"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
DATA_LIMIT = "States.DataLimitExceeded"
NO_CHOICE = "States.NoChoiceMatched"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
BRANCH_FAILED = "States.BranchFailed"
TOLERATED_FAILURE = "States.ExceedToleratedFailureThreshold"

# Errors that States.ALL does not catch: they always end the execution (AWS docs).
UNCATCHABLE_BY_ALL = frozenset({RUNTIME, DATA_LIMIT})

PAYLOAD_LIMIT = 256 * 1024


class StatesError(Exception):
    """A failure inside an execution: an error name and a human-readable cause.

    A missed heartbeat is reported as States.Timeout (what AWS's history shows) with
    `heartbeat` set, so that a Retrier or Catcher naming States.HeartbeatTimeout (which
    AWS documents as usable only there) matches it too.
    """

    def __init__(self, error: str, cause: str = "", heartbeat: bool = False) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause
        self.heartbeat = heartbeat


def heartbeat_timeout() -> StatesError:
    return StatesError(TIMEOUT, "", heartbeat=True)


def matches(names: list[str], error: str, heartbeat: bool = False) -> bool:
    """Does a Retrier's or Catcher's ErrorEquals list match `error`?"""
    if error == RUNTIME:
        return False
    for name in names:
        if name == error or (heartbeat and name == HEARTBEAT_TIMEOUT):
            return True
        if name == ALL and error not in UNCATCHABLE_BY_ALL:
            return True
        if name == TASK_FAILED and error not in UNCATCHABLE_BY_ALL and error != TIMEOUT:
            return True
    return False
