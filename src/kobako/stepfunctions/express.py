"""Executions that answer in the same request: StartSyncExecution and TestState,
plus ValidateStateMachineDefinition's diagnostics.

Both run the interpreter with an in-memory history (AWS keeps none for synchronous
Express executions). botocore sends them to a `sync-` host prefix; kobako routes by
X-Amz-Target, so either host works.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.server.service import Handler, RequestContext
from kobako.stepfunctions import arns, definition, errors, paths
from kobako.stepfunctions.clock import Clock
from kobako.stepfunctions.engine import Cursor, FailState, Frame, Interpreter, dumps, iso
from kobako.stepfunctions.errors import StatesError
from kobako.stepfunctions.executions import Executions
from kobako.stepfunctions.store import SfnStore

EXPRESS_LIMIT = 300.0  # seconds: an Express execution runs at most five minutes
_PROBLEM = re.compile(r"\A([A-Z_]+): (.*?)(?: at (/\S*))?\Z", re.DOTALL)


class _Memory:
    """A history that is not kept."""

    def __init__(self) -> None:
        self.count = 0

    def event(self, type: str, details: dict[str, Any] | None, previous: int,
              cursor: Cursor | None = None) -> int:
        self.count += 1
        return self.count

    def checkpoint(self, cursor: Cursor) -> None:
        pass


def diagnostics(problems: list[str]) -> list[dict[str, str]]:
    out = []
    for problem in problems:
        found = _PROBLEM.match(problem)
        code, message, location = found.groups() if found else ("SCHEMA_VALIDATION_FAILED",
                                                                problem, None)
        item = {"severity": "ERROR", "code": code, "message": message}
        if location:
            item["location"] = location
        out.append(item)
    return out


class ExpressApi:
    def __init__(self, store: SfnStore, runner: Executions, clock: Clock) -> None:
        self.store, self.runner, self.clock = store, runner, clock

    def handlers(self) -> dict[str, Handler]:
        return {"StartSyncExecution": self.start_sync,
                "ValidateStateMachineDefinition": self.validate,
                "TestState": self.test_state}

    def _interpreter(self, arn: str, ctx: RequestContext) -> Interpreter:
        return Interpreter(_Memory(), self.clock, self.runner.integrations, arn, ctx.region,
                           ctx.account_id, tokens=self.runner.tokens,
                           activity_exists=self.runner.activity_exists,
                           map_runs=self.runner.map_runs)

    async def validate(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("definition") is None:
            raise AwsError("ValidationException", "1 validation error detected: Value null "
                           "at 'definition' failed to satisfy constraint: Member must not "
                           "be null")
        _, problems = definition.diagnose(str(params["definition"]))
        found = diagnostics(problems)
        limit = int(params.get("maxResults") or 100)
        return {"result": "FAIL" if found else "OK", "diagnostics": found[:limit],
                "truncated": len(found) > limit}

    async def start_sync(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("stateMachineArn")
        if arn is None:
            raise AwsError("ValidationException", "1 validation error detected: Value null "
                           "at 'stateMachineArn' failed to satisfy constraint: Member must "
                           "not be null")
        parsed = arns.parse(str(arn), "stateMachine")
        machine = self.store.machine(str(arn))
        if machine is None:
            raise AwsError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        if machine["type"] != "EXPRESS":
            raise AwsError("StateMachineTypeNotSupported", "This operation is not supported "
                           "by this type of state machine")
        name = str(params.get("name") or uuid.uuid4())
        arns.check_name(name)
        text = params.get("input") or "{}"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AwsError("InvalidExecutionInput",
                           f"Invalid State Machine Execution Input: '{exc}'") from None
        execution = f"arn:aws:states:{parsed.region}:{parsed.account}:express:" \
            f"{parsed.name}:{name}:{uuid.uuid4()}"
        started = self.clock.now()
        body = json.loads(machine["definition"])
        context = {"Execution": {"Id": execution, "Input": data, "Name": name,
                                 "RoleArn": machine["role_arn"], "StartTime": iso(started),
                                 "RedriveCount": 0},
                   "StateMachine": {"Id": arn, "Name": parsed.name}}
        out: dict[str, Any] = {"executionArn": execution, "stateMachineArn": arn,
                               "name": name, "startDate": _date(started), "input": text,
                               "inputDetails": {"included": True}}
        limit = min(float(body.get("TimeoutSeconds", EXPRESS_LIMIT)), EXPRESS_LIMIT)
        tick = time.monotonic()
        try:
            result = await _within(self._interpreter(execution, ctx).run(
                body, Cursor(str(body["StartAt"]), data), Frame(context)), limit)
        except TimeoutError:
            out.update(status="TIMED_OUT", error=errors.TIMEOUT,
                       cause="The execution timed out.")
        except (FailState, StatesError) as exc:
            out.update(status="FAILED", error=exc.error, cause=exc.cause)
        else:
            out.update(status="SUCCEEDED", output=dumps(result),
                       outputDetails={"included": True})
        elapsed = max(1, round((time.monotonic() - tick) * 1000))
        out["stopDate"] = _date(self.clock.now())
        out["billingDetails"] = {"billedMemoryUsedInMB": 64,
                                 "billedDurationInMilliseconds": -(-elapsed // 100) * 100}
        return out

    async def test_state(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        for key in ("definition",):
            if params.get(key) is None:
                raise AwsError("ValidationException", f"1 validation error detected: Value "
                               f"null at '{key}' failed to satisfy constraint: Member must "
                               "not be null")
        try:
            state = json.loads(str(params["definition"]))
        except json.JSONDecodeError as exc:
            raise AwsError("InvalidDefinition", f"Invalid State Machine Definition: "
                           f"'INVALID_JSON_DESCRIPTION: {exc}'") from None
        problems = definition.check_state(state)
        if problems:
            raise AwsError("InvalidDefinition", "Invalid State Machine Definition: "
                           f"'{', '.join(problems)}'")
        try:
            data = json.loads(params.get("input") or "{}")
            variables = json.loads(params.get("variables") or "{}")
        except json.JSONDecodeError as exc:
            raise AwsError("InvalidExecutionInput", f"Invalid input: '{exc}'") from None
        return await self._test(ctx, state, data, variables,
                                params.get("inspectionLevel") or "INFO")

    async def _test(self, ctx: RequestContext, state: dict[str, Any], data: Any,
                    variables: dict[str, Any], level: str) -> dict[str, Any]:
        bare = {k: v for k, v in state.items() if k not in ("Retry", "Catch")}
        if "Next" not in bare and state.get("Type") not in ("Choice", "Succeed", "Fail"):
            bare["End"] = True
        execution = f"arn:aws:states:{ctx.region}:{ctx.account_id}:execution:TestState:" \
            f"{uuid.uuid4()}"
        frame = Frame({"Execution": {"Id": execution, "Input": data, "Name": "TestState",
                                     "StartTime": iso(self.clock.now())},
                       "StateMachine": {"Id": "TestState", "Name": "TestState"}})
        frame.scope.maps[0].update(variables)
        machine = {"StartAt": "TestState", "States": {"TestState": bare}}
        out: dict[str, Any] = {}
        if level in ("DEBUG", "TRACE"):
            out["inspectionData"] = {"input": dumps(data)}
        try:
            step = await self._interpreter(execution, ctx).step(
                machine, Cursor("TestState", data), frame)
        except (FailState, StatesError) as exc:
            return {**out, **self._failed(state, data, exc.error, exc.cause)}
        out.update(status="SUCCEEDED", output=dumps(step.output))
        if step.next is not None:
            out["nextState"] = step.next
        if "inspectionData" in out:
            out["inspectionData"]["variables"] = dumps(dict(frame.scope.maps[0]))
        return out

    def _failed(self, state: dict[str, Any], data: Any, error: str,
                cause: str) -> dict[str, Any]:
        """What AWS reports instead of retrying or catching: RETRIABLE, CAUGHT_ERROR."""
        out: dict[str, Any] = {"error": error, "cause": cause}
        if any(errors.matches(r["ErrorEquals"], error) for r in state.get("Retry", [])):
            return {**out, "status": "RETRIABLE"}
        for catcher in state.get("Catch", []):
            if errors.matches(catcher["ErrorEquals"], error):
                failure = {"Error": error, "Cause": cause}
                path = catcher.get("ResultPath", "$")
                caught = data if path is None else paths.write(str(path), data, failure)
                return {**out, "status": "CAUGHT_ERROR", "nextState": catcher["Next"],
                        "output": dumps(caught)}
        return {**out, "status": "FAILED"}


async def _within(work: Any, seconds: float) -> Any:
    return await asyncio.wait_for(work, seconds)


def _date(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
