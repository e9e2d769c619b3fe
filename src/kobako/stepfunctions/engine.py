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
from collections import ChainMap
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kobako.stepfunctions import choice, errors, jsonata_ql, paths, template
from kobako.stepfunctions.clock import Clock
from kobako.stepfunctions.errors import StatesError
from kobako.stepfunctions.integrations import Integrations
from kobako.stepfunctions.payload import check_size
from kobako.stepfunctions.payload import dumps as dumps
from kobako.stepfunctions.task_state import TaskStates
from kobako.stepfunctions.tokens import TaskTokens


@dataclass
class Cursor:
    """Where a run stands: the state to execute, its raw input, progress inside it."""

    state: str
    input: Any
    entered: int | None = None  # id of the state's *Entered event, once written
    deadline: float | None = None  # a Wait state's wake-up time, once computed
    variables: dict[str, Any] | None = None  # the run's workflow variables (Assign)
    task: dict[str, Any] | None = None  # a Task attempt's progress (see task_state)
    redriven: bool = False  # RedriveExecution re-runs this state (a Map Run is redriven)

    def to_json(self) -> str:
        raw = {"state": self.state, "input": self.input, "entered": self.entered,
               "deadline": self.deadline}
        if self.variables:
            raw["variables"] = self.variables
        if self.task:
            raw["task"] = self.task
        if self.redriven:
            raw["redriven"] = True
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> Cursor:
        raw = json.loads(text)
        return cls(raw["state"], raw["input"], raw.get("entered"), raw.get("deadline"),
                   raw.get("variables"), raw.get("task"), bool(raw.get("redriven")))


class Recorder(Protocol):
    def event(self, type: str, details: dict[str, Any] | None, previous: int,
              cursor: Cursor | None = None) -> int:
        """Append a history event (and the run's new cursor, atomically); its id."""
        ...

    def checkpoint(self, cursor: Cursor) -> None: ...


# A Recorder whose `resolves_entered` is True stores a cursor whose `entered` is -1
# with the id of the event written alongside it, saving a checkpoint per state.


class Context(dict[str, Any]):
    """The context object (`$$`), carrying the workflow variables its frame can see."""

    variables: ChainMap[str, Any]


def map_items(state: dict[str, Any], data: Any, frame: Frame,
              states: dict[str, Any] | None) -> list[Any]:
    """A Map state's items from its input (ItemsPath, or JSONata `Items`): an array."""
    if states is not None:
        items = jsonata_ql.render(state.get("Items", "{% $states.input %}"), states,
                                  frame.scope)
    else:
        items = template.read_path(str(state["ItemsPath"]), data, frame.context,
                                   "ItemsPath") if "ItemsPath" in state else data
    if not isinstance(items, list):
        raise StatesError(errors.RUNTIME, f"Map state input must be an array, got "
                          f"'{template.preview(items)}'")
    return items


@dataclass
class Frame:
    """One thread of events: the top-level run, a Parallel branch, a Map iteration.

    `scope` holds the workflow variables: Assign writes the first map; a branch or
    iteration gets a child scope, so it reads outer variables but its own
    assignments stay inside it, as in AWS.
    """

    context: dict[str, Any]
    last: int = 0
    durable: bool = False  # only the top-level run persists its cursor
    scope: ChainMap[str, Any] = field(default_factory=ChainMap)
    language: str = "JSONPath"
    entered: int | None = None  # the Entered event id of the state running in it
    cursor: Cursor | None = None  # that state's cursor

    def __post_init__(self) -> None:
        if not isinstance(self.context, Context):
            self.context = Context(self.context)
        assert isinstance(self.context, Context)
        self.context.variables = self.scope


class DistributedMap(Protocol):
    """Runs a Map state whose ItemProcessor is DISTRIBUTED (see `map_run`)."""

    async def run(self, interpreter: Interpreter, name: str, state: dict[str, Any],
                  data: Any, frame: Frame, states: dict[str, Any] | None) -> Any: ...


@dataclass
class Step:
    """The record of one executed state: its output and the next state (None: done)."""

    output: Any
    next: str | None


def iso(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


ENTERED = {"Pass": "PassStateEntered", "Task": "TaskStateEntered",
           "Choice": "ChoiceStateEntered", "Wait": "WaitStateEntered",
           "Succeed": "SucceedStateEntered", "Fail": "FailStateEntered",
           "Parallel": "ParallelStateEntered", "Map": "MapStateEntered"}


@dataclass
class Interpreter(TaskStates):
    recorder: Recorder
    clock: Clock
    integrations: Integrations
    execution_arn: str
    region: str
    account_id: str
    rng: random.Random = field(default_factory=random.Random)
    # Callbacks and activities; without them such Tasks fail with States.Runtime.
    tokens: TaskTokens | None = None
    activity_exists: Callable[[str], bool] = lambda arn: False
    map_runs: DistributedMap | None = None

    def emit(self, frame: Frame, type: str, details: dict[str, Any] | None = None,
             cursor: Cursor | None = None) -> int:
        frame.last = self.recorder.event(
            type, details, frame.last, cursor if frame.durable else None)
        return frame.last

    async def run(self, machine: dict[str, Any], cursor: Cursor, frame: Frame) -> Any:
        """Run from `cursor` to a terminal state; the output, or raise StatesError."""
        if cursor.variables:
            frame.scope.maps[0].update(cursor.variables)
        frame.language = str(machine.get("QueryLanguage", frame.language))
        while True:
            result = await self.step(machine, cursor, frame)
            if result.next is None:
                return result.output
            cursor = Cursor(result.next, result.output,
                            variables=dict(frame.scope.maps[0]) or None)

    async def step(self, machine: dict[str, Any], cursor: Cursor, frame: Frame) -> Step:
        name = cursor.state
        state: dict[str, Any] = machine["States"][name]
        kind = str(state["Type"])
        if cursor.entered is None:
            cursor.entered = -1
            entered_id = self.emit(frame, ENTERED[kind],
                                   {"name": name, "input": dumps(cursor.input)}, cursor)
            cursor.entered = entered_id
            if frame.durable and not getattr(self.recorder, "resolves_entered", False):
                self.recorder.checkpoint(cursor)
        frame.context["State"] = {"EnteredTime": iso(self.clock.now()), "Name": name,
                                  "RetryCount": 0}
        frame.entered = cursor.entered
        frame.cursor = cursor
        try:
            if state.get("QueryLanguage", frame.language) == "JSONata":
                output, next_state = await self._execute_jsonata(kind, name, state, cursor,
                                                                 frame)
            else:
                output, next_state = await self._execute(kind, name, state, cursor, frame)
        except StatesError as exc:
            if exc.error == errors.RUNTIME and not exc.cause.startswith("An error occurred"):
                exc.cause = (f"An error occurred while executing the state '{name}' (entered "
                             f"at the event id #{cursor.entered}). {exc.cause}")
            raise
        check_size(output, name)
        following = Cursor(next_state, output, variables=dict(frame.scope.maps[0]) or None) \
            if next_state is not None else None
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
                    self._assign_paths(rule.get("Assign", state.get("Assign")), effective,
                                       frame)
                    return self._output_path(state, effective, ctx), str(rule["Next"])
            if "Default" in state:
                self._assign_paths(state.get("Assign"), effective, frame)
                return self._output_path(state, effective, ctx), str(state["Default"])
            raise StatesError(errors.NO_CHOICE, "No Matches!")
        if kind == "Succeed":
            return self._output_path(state, effective, ctx), None
        if kind == "Wait":
            await self._wait(state, effective, cursor, frame)
            self._assign_paths(state.get("Assign"), effective, frame)
            return self._output_path(state, effective, ctx), _next(state)
        if kind == "Pass":
            if "Parameters" in state:
                effective = template.render(state["Parameters"], effective, ctx)
            result = state.get("Result", effective)
            output = self._finish(state, raw, result, ctx)
            self._assign_paths(state.get("Assign"), result, frame)
            return output, _next(state)
        return await self._with_handlers(kind, name, state, raw, effective, frame)

    # ------------------------------------------------------------ variables and JSONata

    def _assign_paths(self, assign: Any, source: Any, frame: Frame) -> None:
        """JSONPath Assign: `.$` values read `source` (the result, or the input)."""
        if assign:
            values = template.render(assign, source, frame.context, "Assign")
            frame.scope.maps[0].update(values)

    def _settle(self, holder: dict[str, Any], states: dict[str, Any], frame: Frame,
                default: Any) -> Any:
        """JSONata Output and Assign of a state, rule or catcher: both see the variables
        as they were before this state, then the assignments take effect."""
        output = jsonata_ql.render(holder["Output"], states, frame.scope) \
            if "Output" in holder else default
        if holder.get("Assign"):
            values = jsonata_ql.render(holder["Assign"], states, frame.scope)
            frame.scope.maps[0].update(values)
        return output

    async def _execute_jsonata(self, kind: str, name: str, state: dict[str, Any],
                               cursor: Cursor, frame: Frame) -> tuple[Any, str | None]:
        raw = cursor.input
        states: dict[str, Any] = {"input": raw, "context": frame.context}

        def value(key: str) -> Any:
            return jsonata_ql.render(state.get(key), states, frame.scope)

        if kind == "Fail":
            error, cause = value("Error"), value("Cause")
            if not isinstance(error, str | None) or not isinstance(cause, str | None):
                raise StatesError(jsonata_ql.QUERY_EVALUATION_ERROR,
                                  "The Fail state's Error and Cause must be strings.")
            raise FailState(error or "", cause or "")
        if kind == "Choice":
            for rule in state["Choices"]:
                held = jsonata_ql.render(rule["Condition"], states, frame.scope)
                if not isinstance(held, bool):
                    raise StatesError(jsonata_ql.QUERY_EVALUATION_ERROR, f"The Condition "
                                      f"'{rule['Condition']}' returned {dumps(held)}, not "
                                      "a boolean.")
                if held:
                    holder = {**state, **{k: rule[k] for k in ("Output", "Assign")
                                          if k in rule}}
                    return self._settle(holder, states, frame, raw), str(rule["Next"])
            if "Default" in state:
                return self._settle(state, states, frame, raw), str(state["Default"])
            raise StatesError(errors.NO_CHOICE, "No Matches!")
        if kind == "Wait":
            resolved: dict[str, Any] = {k: value(k) for k in ("Seconds", "Timestamp")
                                        if k in state}
            if "Seconds" in resolved and (isinstance(resolved["Seconds"], bool) or not
                                          isinstance(resolved["Seconds"], int | float)
                                          or resolved["Seconds"] < 0):
                raise StatesError(jsonata_ql.QUERY_EVALUATION_ERROR, "The Seconds field "
                                  "must be a non-negative number.")
            if "Timestamp" in resolved and choice.parse_timestamp(
                    resolved["Timestamp"]) is None:
                raise StatesError(jsonata_ql.QUERY_EVALUATION_ERROR, "The Timestamp field "
                                  "must be an ISO-8601 timestamp.")
            await self._wait(resolved, raw, cursor, frame)
            return self._settle(state, states, frame, raw), _next(state)
        if kind in ("Pass", "Succeed"):
            output = self._settle(state, states, frame, raw)
            return output, _next(state) if kind == "Pass" else None
        return await self._with_handlers(kind, name, state, raw, raw, frame)

    async def _body_jsonata(self, kind: str, name: str, state: dict[str, Any], raw: Any,
                            frame: Frame, states: dict[str, Any]) -> Any:
        resolved = dict(state)
        for key in ("TimeoutSeconds", "HeartbeatSeconds", "MaxConcurrency",
                    "ToleratedFailureCount", "ToleratedFailurePercentage"):
            if jsonata_ql.expression(state.get(key)) is not None:
                resolved[key] = jsonata_ql.render(state[key], states, frame.scope)
        if kind == "Map":
            return await self._map(name, resolved, raw, frame, states)
        if kind == "Parallel":
            arguments = jsonata_ql.render(state["Arguments"], states, frame.scope) \
                if "Arguments" in state else raw
            return await self._parallel(state, arguments, frame)
        token = self._token(state, frame)
        if token is not None:
            frame.context["Task"] = {"Token": token}
        try:
            arguments = jsonata_ql.render(state["Arguments"], states, frame.scope) \
                if "Arguments" in state else raw
            return await self._task(name, resolved, arguments, frame, token)
        finally:
            frame.context.pop("Task", None)
            if token is not None and self.tokens is not None:
                self.tokens.release(token)

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
        jsonata = state.get("QueryLanguage", frame.language) == "JSONata"
        states: dict[str, Any] = {"input": raw, "context": ctx}
        attempts = [0] * len(state.get("Retry", []))
        while True:
            try:
                if jsonata:
                    states["result"] = await self._body_jsonata(kind, name, state, raw,
                                                                frame, states)
                    return self._settle(state, states, frame, states["result"]), \
                        _next(state)
                result = await self._body(kind, name, state, effective, frame)
                if "ResultSelector" in state:
                    result = template.render(state["ResultSelector"], result, ctx,
                                             "ResultSelector")
                output = self._finish(state, raw, result, ctx)
                self._assign_paths(state.get("Assign"), result, frame)
                return output, _next(state)
            except StatesError as exc:
                delay = self._retry_delay(state, exc, attempts)
                if delay is not None:
                    ctx["State"]["RetryCount"] = sum(attempts)
                    await self.clock.sleep(delay)
                    continue
                for catcher in state.get("Catch", []):
                    if errors.matches(catcher["ErrorEquals"], exc.error, exc.heartbeat):
                        failure = {"Error": exc.error, "Cause": exc.cause}
                        if jsonata:
                            states.pop("result", None)
                            states["errorOutput"] = failure
                            return self._settle(catcher, states, frame, failure), \
                                str(catcher["Next"])
                        self._assign_paths(catcher.get("Assign"), failure, frame)
                        path = catcher.get("ResultPath", "$")
                        output = raw if path is None else paths.write(str(path), raw, failure)
                        return output, str(catcher["Next"])
                raise

    def _retry_delay(self, state: dict[str, Any], exc: StatesError,
                     attempts: list[int]) -> float | None:
        for index, retrier in enumerate(state.get("Retry", [])):
            if not errors.matches(retrier["ErrorEquals"], exc.error, exc.heartbeat):
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
            token = self._token(state, frame)
            if token is not None:
                ctx["Task"] = {"Token": token}
            try:
                parameters = template.render(state["Parameters"], effective, ctx) \
                    if "Parameters" in state else effective
                return await self._task(name, state, parameters, frame, token, effective)
            finally:
                ctx.pop("Task", None)
                if token is not None and self.tokens is not None:
                    self.tokens.release(token)
        if kind == "Parallel":
            parameters = template.render(state["Parameters"], effective, ctx) \
                if "Parameters" in state else effective
            return await self._parallel(state, parameters, frame)
        return await self._map(name, state, effective, frame)

    # ------------------------------------------------------------ Parallel and Map

    def _child(self, frame: Frame, extra: dict[str, Any] | None = None) -> Frame:
        context = {k: v for k, v in frame.context.items() if k != "State"}
        if extra:
            context.update(extra)
        return Frame(context, frame.last, scope=frame.scope.new_child(),
                     language=frame.language)

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

    async def _map(self, name: str, state: dict[str, Any], data: Any, frame: Frame,
                   states: dict[str, Any] | None = None) -> Any:
        """A Map state; `states` is given for JSONata (`Items`, ItemSelector expressions)."""
        if is_distributed(state):
            if self.map_runs is None:
                raise StatesError(errors.RUNTIME, "kobako cannot run a distributed Map here.")
            return await self.map_runs.run(self, name, state, data, frame, states)
        items = map_items(state, data, frame, states)
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
                if selector is None:
                    value = item
                elif states is not None:
                    value = jsonata_ql.render(selector, {**states, "context": child.context},
                                              child.scope)
                else:
                    value = template.render(selector, data, child.context, "ItemSelector")
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


def is_distributed(state: dict[str, Any]) -> bool:
    processor = state.get("ItemProcessor")
    config = processor.get("ProcessorConfig") if isinstance(processor, dict) else None
    return isinstance(config, dict) and config.get("Mode") == "DISTRIBUTED"


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

