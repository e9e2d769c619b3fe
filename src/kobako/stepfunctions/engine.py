"""The States Language interpreter: one state at a time, no HTTP, no SQL.

`Interpreter.step` executes one state and returns where to go next; `run` loops it.
History events go to a `Recorder` as they happen (the store persists each one,
together with the `Cursor` that says where a top-level run stands), which is what
lets a standard execution resume after a crash: re-entering at the cursor skips the
events already written and keeps a Wait's deadline.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kobako.stepfunctions import choice, errors, paths, template
from kobako.stepfunctions.clock import Clock
from kobako.stepfunctions.errors import StatesError
from kobako.stepfunctions.integrations import Integrations, TaskCall, describe


@dataclass
class Cursor:
    """Where a run stands: the state to execute, its raw input, progress inside it."""

    state: str
    input: Any
    entered: int | None = None  # id of the state's *Entered event, once written
    deadline: float | None = None  # a Wait state's wake-up time, once computed

    def to_json(self) -> str:
        return json.dumps({"state": self.state, "input": self.input,
                           "entered": self.entered, "deadline": self.deadline})

    @classmethod
    def from_json(cls, text: str) -> Cursor:
        raw = json.loads(text)
        return cls(raw["state"], raw["input"], raw.get("entered"), raw.get("deadline"))


class Recorder(Protocol):
    def event(self, type: str, details: dict[str, Any] | None, previous: int,
              cursor: Cursor | None = None) -> int:
        """Append a history event (and the run's new cursor, atomically); its id."""
        ...

    def checkpoint(self, cursor: Cursor) -> None: ...


@dataclass
class Frame:
    """One thread of events: the top-level run, a Parallel branch, a Map iteration."""

    context: dict[str, Any]
    last: int = 0
    durable: bool = False  # only the top-level run persists its cursor


@dataclass
class Step:
    """The record of one executed state: its output and the next state (None: done)."""

    output: Any
    next: str | None


def iso(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def check_size(value: Any, what: str) -> None:
    if len(dumps(value).encode()) > errors.PAYLOAD_LIMIT:
        raise StatesError(
            errors.DATA_LIMIT,
            f"The state/task '{what}' returned a result with a size exceeding the maximum "
            "number of bytes service limit.",
        )


ENTERED = {"Pass": "PassStateEntered", "Task": "TaskStateEntered",
           "Choice": "ChoiceStateEntered", "Wait": "WaitStateEntered",
           "Succeed": "SucceedStateEntered", "Fail": "FailStateEntered",
           "Parallel": "ParallelStateEntered", "Map": "MapStateEntered"}


@dataclass
class Interpreter:
    recorder: Recorder
    clock: Clock
    integrations: Integrations
    execution_arn: str
    region: str
    account_id: str
    rng: random.Random = field(default_factory=random.Random)

    def emit(self, frame: Frame, type: str, details: dict[str, Any] | None = None,
             cursor: Cursor | None = None) -> int:
        frame.last = self.recorder.event(
            type, details, frame.last, cursor if frame.durable else None)
        return frame.last

    async def run(self, machine: dict[str, Any], cursor: Cursor, frame: Frame) -> Any:
        """Run from `cursor` to a terminal state; the output, or raise StatesError."""
        while True:
            result = await self.step(machine, cursor, frame)
            if result.next is None:
                return result.output
            cursor = Cursor(result.next, result.output)

    async def step(self, machine: dict[str, Any], cursor: Cursor, frame: Frame) -> Step:
        name = cursor.state
        state: dict[str, Any] = machine["States"][name]
        kind = str(state["Type"])
        if cursor.entered is None:
            cursor.entered = -1
            entered_id = self.emit(frame, ENTERED[kind],
                                   {"name": name, "input": dumps(cursor.input)}, cursor)
            cursor.entered = entered_id
            if frame.durable:
                self.recorder.checkpoint(cursor)
        frame.context["State"] = {"EnteredTime": iso(self.clock.now()), "Name": name,
                                  "RetryCount": 0}
        try:
            output, next_state = await self._execute(kind, name, state, cursor, frame)
        except StatesError as exc:
            if exc.error == errors.RUNTIME and not exc.cause.startswith("An error occurred"):
                exc.cause = (f"An error occurred while executing the state '{name}' (entered "
                             f"at the event id #{cursor.entered}). {exc.cause}")
            raise
        check_size(output, name)
        following = Cursor(next_state, output) if next_state is not None else None
        self.emit(frame, ENTERED[kind].replace("Entered", "Exited"),
                  {"name": name, "output": dumps(output)}, following)
        return Step(output, next_state)

    async def _execute(self, kind: str, name: str, state: dict[str, Any], cursor: Cursor,
                       frame: Frame) -> tuple[Any, str | None]:
        raw = cursor.input
        ctx = frame.context
        if kind == "Fail":
            error = template.resolve(state["ErrorPath"], raw, ctx, "ErrorPath") \
                if "ErrorPath" in state else state.get("Error")
            cause = template.resolve(state["CausePath"], raw, ctx, "CausePath") \
                if "CausePath" in state else state.get("Cause")
            if (error is not None and not isinstance(error, str)) or (
                    cause is not None and not isinstance(cause, str)):
                raise StatesError(errors.RUNTIME, "The Fail state's ErrorPath and CausePath "
                                  "must resolve to strings.")
            raise FailState(error or "", cause or "")
        effective = self._input_path(state, raw, ctx)
        if kind == "Choice":
            for rule in state["Choices"]:
                if choice.evaluate(rule, effective, ctx):
                    return self._output_path(state, effective, ctx), str(rule["Next"])
            if "Default" in state:
                return self._output_path(state, effective, ctx), str(state["Default"])
            raise StatesError(errors.NO_CHOICE, "No Matches!")
        if kind == "Succeed":
            return self._output_path(state, effective, ctx), None
        if kind == "Wait":
            await self._wait(state, effective, cursor, frame)
            return self._output_path(state, effective, ctx), _next(state)
        if kind == "Pass":
            if "Parameters" in state:
                effective = template.render(state["Parameters"], effective, ctx)
            result = state.get("Result", effective)
            return self._finish(state, raw, result, ctx), _next(state)
        return await self._with_handlers(kind, name, state, raw, effective, frame)

    # ------------------------------------------------------------ path processing

    def _input_path(self, state: dict[str, Any], raw: Any, ctx: dict[str, Any]) -> Any:
        if "InputPath" not in state:
            return raw
        if state["InputPath"] is None:
            return {}
        return template.read_path(str(state["InputPath"]), raw, ctx, "InputPath")

    def _output_path(self, state: dict[str, Any], value: Any, ctx: dict[str, Any]) -> Any:
        if "OutputPath" not in state:
            return value
        if state["OutputPath"] is None:
            return {}
        return template.read_path(str(state["OutputPath"]), value, ctx, "OutputPath")

    def _finish(self, state: dict[str, Any], raw: Any, result: Any,
                ctx: dict[str, Any]) -> Any:
        """ResultPath then OutputPath: the state's output from its raw input and result."""
        if "ResultPath" in state and state["ResultPath"] is None:
            combined = raw
        else:
            combined = paths.write(str(state.get("ResultPath", "$")), raw, result)
        return self._output_path(state, combined, ctx)

    # ------------------------------------------------------------ Wait

    async def _wait(self, state: dict[str, Any], data: Any, cursor: Cursor,
                    frame: Frame) -> None:
        if cursor.deadline is None:
            cursor.deadline = self._deadline(state, data, frame.context)
            if frame.durable:
                self.recorder.checkpoint(cursor)
        await self.clock.sleep(cursor.deadline - self.clock.now())

    def _deadline(self, state: dict[str, Any], data: Any, ctx: dict[str, Any]) -> float:
        now = self.clock.now()
        if "Seconds" in state:
            return now + float(state["Seconds"])
        if "Timestamp" in state:
            stamp = choice.parse_timestamp(state["Timestamp"])
            assert stamp is not None  # validated with the definition
            return stamp.timestamp()
        if "SecondsPath" in state:
            value = template.read_path(str(state["SecondsPath"]), data, ctx, "SecondsPath")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise StatesError(errors.RUNTIME, f"The SecondsPath parameter does not "
                                  f"reference a valid non-negative integer: {dumps(value)}")
            return now + float(value)
        value = template.read_path(str(state["TimestampPath"]), data, ctx, "TimestampPath")
        stamp = choice.parse_timestamp(value)
        if stamp is None:
            raise StatesError(errors.RUNTIME, f"The TimestampPath parameter does not "
                              f"reference a valid ISO-8601 extended offset date-time "
                              f"format string: {dumps(value)}")
        return stamp.timestamp()

    # ------------------------------------------------------------ Retry / Catch

    async def _with_handlers(self, kind: str, name: str, state: dict[str, Any], raw: Any,
                             effective: Any, frame: Frame) -> tuple[Any, str | None]:
        ctx = frame.context
        attempts = [0] * len(state.get("Retry", []))
        while True:
            try:
                result = await self._body(kind, name, state, effective, frame)
                if "ResultSelector" in state:
                    result = template.render(state["ResultSelector"], result, ctx,
                                             "ResultSelector")
                return self._finish(state, raw, result, ctx), _next(state)
            except StatesError as exc:
                delay = self._retry_delay(state, exc, attempts)
                if delay is not None:
                    ctx["State"]["RetryCount"] = sum(attempts)
                    await self.clock.sleep(delay)
                    continue
                for catcher in state.get("Catch", []):
                    if errors.matches(catcher["ErrorEquals"], exc.error):
                        failure = {"Error": exc.error, "Cause": exc.cause}
                        path = catcher.get("ResultPath", "$")
                        output = raw if path is None else paths.write(str(path), raw, failure)
                        return output, str(catcher["Next"])
                raise

    def _retry_delay(self, state: dict[str, Any], exc: StatesError,
                     attempts: list[int]) -> float | None:
        for index, retrier in enumerate(state.get("Retry", [])):
            if not errors.matches(retrier["ErrorEquals"], exc.error):
                continue
            if attempts[index] >= int(retrier.get("MaxAttempts", 3)):
                return None
            delay = float(retrier.get("IntervalSeconds", 1)) * float(
                retrier.get("BackoffRate", 2.0)) ** attempts[index]
            if "MaxDelaySeconds" in retrier:
                delay = min(delay, float(retrier["MaxDelaySeconds"]))
            if retrier.get("JitterStrategy") == "FULL":
                delay = self.rng.uniform(0, delay)
            attempts[index] += 1
            return delay
        return None

    async def _body(self, kind: str, name: str, state: dict[str, Any], effective: Any,
                    frame: Frame) -> Any:
        ctx = frame.context
        if kind == "Task":
            parameters = template.render(state["Parameters"], effective, ctx) \
                if "Parameters" in state else effective
            return await self._task(name, state, parameters, frame)
        if kind == "Parallel":
            parameters = template.render(state["Parameters"], effective, ctx) \
                if "Parameters" in state else effective
            return await self._parallel(state, parameters, frame)
        return await self._map(name, state, effective, frame)

    # ------------------------------------------------------------ Task

    def _seconds(self, state: dict[str, Any], key: str, data: Any,
                 ctx: dict[str, Any]) -> float | None:
        if key in state:
            return float(state[key])
        if key + "Path" in state:
            value = template.read_path(str(state[key + "Path"]), data, ctx, key + "Path")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise StatesError(errors.RUNTIME, f"The {key}Path parameter does not "
                                  f"reference a valid positive integer: {dumps(value)}")
            return float(value)
        return None

    async def _task(self, name: str, state: dict[str, Any], parameters: Any,
                    frame: Frame) -> Any:
        resource = str(state["Resource"])
        kind, short = describe(resource)
        timeout = self._seconds(state, "TimeoutSeconds", parameters, frame.context)
        heartbeat = self._seconds(state, "HeartbeatSeconds", parameters, frame.context)
        scheduled: dict[str, Any] = {"resourceType": kind, "resource": short,
                                     "region": self.region, "parameters": dumps(parameters)}
        if timeout is not None:
            scheduled["timeoutInSeconds"] = int(timeout)
        if heartbeat is not None:
            scheduled["heartbeatInSeconds"] = int(heartbeat)
        self.emit(frame, "TaskScheduled", scheduled)
        self.emit(frame, "TaskStarted", {"resourceType": kind, "resource": short})
        call = TaskCall(resource, parameters, self.execution_arn, self.region,
                        self.account_id, timeout, heartbeat)
        try:
            result = await self._invoke(call, timeout)
            check_size(result, name)
        except StatesError as exc:
            event = "TaskTimedOut" if exc.error == errors.TIMEOUT else "TaskFailed"
            self.emit(frame, event, {"resourceType": kind, "resource": short,
                                     "error": exc.error, "cause": exc.cause})
            raise
        self.emit(frame, "TaskSucceeded", {"resourceType": kind, "resource": short,
                                           "output": dumps(result)})
        return result

    async def _invoke(self, call: TaskCall, timeout: float | None) -> Any:
        work = asyncio.ensure_future(self.integrations.invoke(call))
        if timeout is None:
            return await work
        timer = asyncio.ensure_future(self.clock.sleep(timeout))
        try:
            done, _ = await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            timer.cancel()
            raise
        if work in done:
            timer.cancel()
            return work.result()
        work.cancel()
        raise StatesError(errors.TIMEOUT, "")

    # ------------------------------------------------------------ Parallel and Map

    def _child(self, frame: Frame, extra: dict[str, Any] | None = None) -> Frame:
        context = {k: v for k, v in frame.context.items() if k != "State"}
        if extra:
            context.update(extra)
        return Frame(context, frame.last)

    async def _parallel(self, state: dict[str, Any], data: Any, frame: Frame) -> Any:
        self.emit(frame, "ParallelStateStarted")
        children = [self._child(frame) for _ in state["Branches"]]
        runs = [self._branch(branch, data, child)
                for branch, child in zip(state["Branches"], children, strict=True)]
        try:
            outputs = await _all_or_first_error(runs)
        except StatesError:
            frame.last = max(child.last for child in children)
            self.emit(frame, "ParallelStateFailed")
            raise
        frame.last = max(child.last for child in children)
        self.emit(frame, "ParallelStateSucceeded")
        return outputs

    async def _branch(self, machine: dict[str, Any], data: Any, frame: Frame) -> Any:
        try:
            return await self.run(machine, Cursor(str(machine["StartAt"]), data), frame)
        except FailState as failed:
            raise StatesError(failed.error, failed.cause) from None

    async def _map(self, name: str, state: dict[str, Any], data: Any, frame: Frame) -> Any:
        ctx = frame.context
        items = template.read_path(str(state["ItemsPath"]), data, ctx, "ItemsPath") \
            if "ItemsPath" in state else data
        if not isinstance(items, list):
            raise StatesError(errors.RUNTIME, f"Map state input must be an array, got "
                              f"'{template.preview(items)}'")
        processor = state.get("ItemProcessor", state.get("Iterator"))
        assert isinstance(processor, dict)
        selector = state.get("ItemSelector", state.get("Parameters"))
        self.emit(frame, "MapStateStarted", {"length": len(items)})
        limit = int(state.get("MaxConcurrency", 0)) or len(items) or 1
        gate = asyncio.Semaphore(limit)
        tolerant = "ToleratedFailureCount" in state or "ToleratedFailurePercentage" in state
        failures = 0
        children: list[Frame] = []

        def exceeded() -> bool:
            over_count = "ToleratedFailureCount" in state and \
                failures > int(state["ToleratedFailureCount"])
            over_percent = "ToleratedFailurePercentage" in state and \
                failures * 100 > float(state["ToleratedFailurePercentage"]) * len(items)
            return over_count or over_percent
        results: list[Any] = [None] * len(items)

        async def iteration(index: int, item: Any) -> None:
            nonlocal failures
            async with gate:
                child = self._child(frame, {"Map": {"Item": {"Index": index, "Value": item}}})
                children.append(child)
                self.emit(child, "MapIterationStarted", {"name": name, "index": index})
                value = template.render(selector, data, child.context, "ItemSelector") \
                    if selector is not None else item
                try:
                    results[index] = await self._branch(processor, value, child)
                except StatesError as exc:
                    self.emit(child, "MapIterationFailed", {"name": name, "index": index})
                    if not tolerant:
                        raise
                    failures += 1
                    results[index] = {"Error": exc.error, "Cause": exc.cause}
                    if exceeded():
                        raise StatesError(
                            errors.TOLERATED_FAILURE,
                            "The specified tolerated failure threshold was exceeded",
                        ) from None
                    return
                except asyncio.CancelledError:
                    self.emit(child, "MapIterationAborted", {"name": name, "index": index})
                    raise
                self.emit(child, "MapIterationSucceeded", {"name": name, "index": index})

        try:
            await _all_or_first_error([iteration(i, item) for i, item in enumerate(items)])
        except StatesError:
            frame.last = max([frame.last, *(child.last for child in children)])
            self.emit(frame, "MapStateFailed")
            raise
        frame.last = max([frame.last, *(child.last for child in children)])
        self.emit(frame, "MapStateSucceeded")
        return results


class FailState(Exception):
    """A Fail state was reached: the run ends with this error and cause."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(error)
        self.error = error
        self.cause = cause


def _next(state: dict[str, Any]) -> str | None:
    return None if state.get("End") is True else str(state["Next"])


async def _all_or_first_error(runs: Sequence[Awaitable[Any]]) -> list[Any]:
    """Like gather, but the first failure cancels the other runs before it propagates."""
    tasks = [asyncio.ensure_future(run) for run in runs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise

