"""Unit tests of the ASL interpreter: no server, a fake clock, in-memory history."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kobako.stepfunctions import choice, definition, intrinsics, paths, template
from kobako.stepfunctions.clock import FakeClock
from kobako.stepfunctions.engine import Cursor, FailState, Frame, Interpreter
from kobako.stepfunctions.errors import StatesError
from kobako.stepfunctions.integrations import Integrations, TaskCall


class MemoryRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[int, int, str, dict[str, Any] | None]] = []
        self.cursors: list[Cursor] = []

    def event(self, type: str, details: dict[str, Any] | None, previous: int,
              cursor: Cursor | None = None) -> int:
        self.events.append((len(self.events) + 1, previous, type, details))
        if cursor is not None:
            self.cursors.append(cursor)
        return len(self.events)

    def checkpoint(self, cursor: Cursor) -> None:
        self.cursors.append(cursor)

    def types(self) -> list[str]:
        return [e[2] for e in self.events]


def run(machine: dict[str, Any], data: Any, integrations: Integrations | None = None,
        clock: FakeClock | None = None, cursor: Cursor | None = None
        ) -> tuple[Any, MemoryRecorder, FakeClock]:
    definition.parse(json.dumps(machine))  # every machine here must be valid
    recorder = MemoryRecorder()
    clock = clock or FakeClock()
    interpreter = Interpreter(recorder, clock, integrations or Integrations(),
                              "arn:aws:states:us-east-1:1:execution:m:e", "us-east-1", "1")
    context = {"Execution": {"Id": "exec-id", "Name": "e"}, "StateMachine": {"Id": "sm"}}
    start = cursor or Cursor(machine["StartAt"], data)
    output = asyncio.run(interpreter.run(machine, start, Frame(context, durable=True)))
    return output, recorder, clock


def one(state: dict[str, Any]) -> dict[str, Any]:
    return {"StartAt": "S", "States": {"S": {**state, "End": True}}}


def echo_integrations(**extra: Any) -> Integrations:
    registry = Integrations()

    async def echo(call: TaskCall) -> Any:
        return {"echo": call.parameters}

    registry.register("arn:aws:states:::echo", echo)
    for name, handler in extra.items():
        registry.register(f"arn:aws:states:::{name}", handler)
    return registry


# ---------------------------------------------------------------- paths & templates

def test_paths_read_write() -> None:
    data = {"a": {"b": [1, 2, {"c": 3}]}, "x y": 5}
    assert paths.read("$.a.b[2].c", data) == 3
    assert paths.read("$['x y']", data) == 5
    assert paths.read("$.a.b[1:]", data) == [2, {"c": 3}]
    assert paths.read("$..c", data) == [3]
    with pytest.raises(paths.Missing):
        paths.read("$.nope", data)
    assert paths.write("$.new.deep", {"k": 1}, 7) == {"k": 1, "new": {"deep": 7}}
    assert paths.write("$", {"k": 1}, 7) == 7
    assert paths.reference_steps("$.a[?(@.x)]") is None


def test_input_result_output_paths() -> None:
    machine = one({"Type": "Pass", "InputPath": "$.in", "Parameters": {
        "v.$": "$.value", "ctx.$": "$$.Execution.Name", "lit": "x"},
        "ResultPath": "$.out.result", "OutputPath": "$.out"})
    output, _, _ = run(machine, {"in": {"value": 3}})
    assert output == {"result": {"v": 3, "ctx": "e", "lit": "x"}}
    output, _, _ = run(one({"Type": "Pass", "Result": 1, "ResultPath": None}), {"k": 2})
    assert output == {"k": 2}
    output, _, _ = run(one({"Type": "Pass", "InputPath": None}), {"k": 2})
    assert output == {}


def test_missing_path_is_runtime_error() -> None:
    with pytest.raises(StatesError) as exc:
        run(one({"Type": "Pass", "InputPath": "$.missing"}), {"k": 1})
    assert exc.value.error == "States.Runtime"
    assert "The JSONPath '$.missing' specified for the field 'InputPath' could not be found" \
        in exc.value.cause
    assert "executing the state 'S'" in exc.value.cause


def test_intrinsic_functions() -> None:
    def ev(text: str, data: Any = None) -> Any:
        return template.resolve(text, data or {}, {}, "f.$")

    assert ev("States.Format('Hi {}, {} \\{x\\}', $.n, 3)", {"n": "Bo"}) == "Hi Bo, 3 {x}"
    assert ev("States.StringToJson('{\"a\":1}')") == {"a": 1}
    assert ev("States.JsonToString($.o)", {"o": {"a": [1]}}) == '{"a":[1]}'
    assert ev("States.Array(1, 'two', $.t)", {"t": True}) == [1, "two", True]
    assert ev("States.ArrayPartition(States.ArrayRange(1, 5, 1), 2)") == [[1, 2], [3, 4], [5]]
    assert ev("States.ArrayContains($.a, 2)", {"a": [1, 2]}) is True
    assert ev("States.ArrayGetItem($.a, 1)", {"a": [1, 2]}) == 2
    assert ev("States.ArrayLength($.a)", {"a": [1, 2]}) == 2
    assert ev("States.ArrayUnique($.a)", {"a": [1, 1, 2]}) == [1, 2]
    assert ev("States.Base64Decode(States.Base64Encode('hé'))") == "hé"
    assert ev("States.Hash('abc', 'SHA-256')").startswith("ba7816bf")
    assert ev("States.JsonMerge($.a, $.b, false)", {"a": {"x": 1}, "b": {"y": 2}}) == \
        {"x": 1, "y": 2}
    assert 1 <= ev("States.MathRandom(1, 10)") < 10
    assert ev("States.MathAdd(5, -2)") == 3
    assert ev("States.StringSplit('a,b.c', ',.')") == ["a", "b", "c"]
    assert len(ev("States.UUID()")) == 36
    with pytest.raises(StatesError) as exc:
        ev("States.ArrayGetItem($.a, 5)", {"a": [1]})
    assert exc.value.error == "States.IntrinsicFailure"
    with pytest.raises(intrinsics.IntrinsicSyntaxError):
        intrinsics.parse("States.Nope(1)")


# ---------------------------------------------------------------- choice

def test_choice_operators() -> None:
    data = {"s": "hello", "n": 5, "b": True, "t": "2024-01-01T00:00:00Z", "z": None,
            "other": 5}
    cases = [
        ({"StringEquals": "hello"}, "$.s", True), ({"StringLessThan": "z"}, "$.s", True),
        ({"StringGreaterThanEquals": "i"}, "$.s", False),
        ({"StringMatches": "he*o"}, "$.s", True), ({"StringMatches": "h\\*"}, "$.s", False),
        ({"NumericEquals": 5}, "$.n", True), ({"NumericLessThan": 5}, "$.n", False),
        ({"NumericGreaterThanEquals": 5}, "$.n", True),
        ({"NumericEqualsPath": "$.other"}, "$.n", True),
        ({"BooleanEquals": True}, "$.b", True),
        ({"TimestampLessThan": "2025-01-01T00:00:00Z"}, "$.t", True),
        ({"IsNull": True}, "$.z", True), ({"IsPresent": False}, "$.missing", True),
        ({"IsNumeric": True}, "$.s", False), ({"IsTimestamp": True}, "$.t", True),
        ({"StringEquals": "x"}, "$.missing", False),
        ({"NumericEquals": 5}, "$.s", False),
    ]
    for rule, variable, expected in cases:
        assert choice.evaluate({"Variable": variable, **rule}, data, {}) is expected, rule
    assert choice.evaluate({"And": [{"Variable": "$.n", "NumericEquals": 5},
                                    {"Not": {"Variable": "$.b", "BooleanEquals": False}}]},
                           data, {})
    assert choice.string_matches("a*b", "a\\*b") and not choice.string_matches("axb", "a\\*b")


def test_choice_state_default_and_no_match() -> None:
    machine = {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Big"}]},
        "Big": {"Type": "Pass", "Result": "big", "End": True}}}
    assert run(machine, {"n": 2})[0] == "big"
    with pytest.raises(StatesError) as exc:
        run(machine, {"n": 0})
    assert exc.value.error == "States.NoChoiceMatched"
    machine["States"]["C"]["Default"] = "Big"
    assert run(machine, {"n": 0})[0] == "big"


# ---------------------------------------------------------------- wait, fail, task

def test_wait_forms_use_clock() -> None:
    clock = FakeClock(start=1000.0)
    machine = {"StartAt": "A", "States": {
        "A": {"Type": "Wait", "Seconds": 5, "Next": "B"},
        "B": {"Type": "Wait", "SecondsPath": "$.s", "Next": "C"},
        "C": {"Type": "Wait", "TimestampPath": "$.t", "Next": "D"},
        "D": {"Type": "Wait", "Timestamp": "1970-01-01T00:20:00Z", "End": True}}}
    _, recorder, _ = run(machine, {"s": 10, "t": "1970-01-01T00:17:00Z"}, clock=clock)
    assert clock.sleeps == [5.0, 10.0, 5.0, 180.0]
    assert recorder.types().count("WaitStateEntered") == 4
    assert any(c.deadline == 1005.0 for c in recorder.cursors)


def test_wait_resumes_with_recorded_deadline() -> None:
    clock = FakeClock(start=1000.0)
    machine = one({"Type": "Wait", "Seconds": 60})
    cursor = Cursor("S", {"k": 1}, entered=2, deadline=1010.0)
    output, recorder, _ = run(machine, None, clock=clock, cursor=cursor)
    assert output == {"k": 1}
    assert clock.sleeps == [10.0]
    assert recorder.types() == ["WaitStateExited"]


def test_fail_state_paths() -> None:
    with pytest.raises(FailState) as exc:
        run({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Bad",
                                              "Cause": "why"}}}, {})
    assert (exc.value.error, exc.value.cause) == ("Bad", "why")
    machine = {"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.e",
                                                "CausePath": "States.Format('c={}', $.c)"}}}
    with pytest.raises(FailState) as exc:
        run(machine, {"e": "E1", "c": 2})
    assert (exc.value.error, exc.value.cause) == ("E1", "c=2")


def test_task_events_and_result_selector() -> None:
    machine = one({"Type": "Task", "Resource": "arn:aws:states:::echo",
                   "Parameters": {"x.$": "$.v"}, "ResultSelector": {"got.$": "$.echo.x"},
                   "ResultPath": "$.r"})
    output, recorder, _ = run(machine, {"v": 9}, echo_integrations())
    assert output == {"v": 9, "r": {"got": 9}}
    assert recorder.types() == ["TaskStateEntered", "TaskScheduled", "TaskStarted",
                                "TaskSucceeded", "TaskStateExited"]
    scheduled = recorder.events[1][3]
    assert scheduled is not None and scheduled["resourceType"] == "echo"
    assert json.loads(scheduled["parameters"]) == {"x": 9}
    assert [e[1] for e in recorder.events] == [0, 1, 2, 3, 4]


def test_unknown_resource_fails_with_runtime() -> None:
    with pytest.raises(StatesError) as exc:
        run(one({"Type": "Task", "Resource": "arn:aws:states:::nope:do",
                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "S"}]}), {})
    assert exc.value.error == "States.Runtime"
    assert "arn:aws:states:::nope:do" in exc.value.cause


def test_retry_backoff_then_catch() -> None:
    calls = 0

    async def flaky(call: TaskCall) -> Any:
        nonlocal calls
        calls += 1
        raise StatesError("Boom", f"attempt {calls}")

    machine = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::flaky",
              "Retry": [{"ErrorEquals": ["Other"], "MaxAttempts": 5},
                        {"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 2,
                         "BackoffRate": 3, "MaxAttempts": 3, "MaxDelaySeconds": 10}],
              "Catch": [{"ErrorEquals": ["Boom"], "ResultPath": "$.err", "Next": "H"}],
              "End": True},
        "H": {"Type": "Pass", "End": True}}}
    output, recorder, clock = run(machine, {"k": 1}, echo_integrations(flaky=flaky))
    assert calls == 4
    assert clock.sleeps == [2.0, 6.0, 10.0]
    assert output == {"k": 1, "err": {"Error": "Boom", "Cause": "attempt 4"}}
    assert recorder.types().count("TaskFailed") == 4


def test_jitter_full_stays_below_delay() -> None:
    async def fail(call: TaskCall) -> Any:
        raise StatesError("X", "")

    machine = one({"Type": "Task", "Resource": "arn:aws:states:::fail",
                   "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 4,
                              "MaxAttempts": 2, "JitterStrategy": "FULL"}]})
    clock = FakeClock()
    with pytest.raises(StatesError):
        run(machine, {}, echo_integrations(fail=fail), clock=clock)
    assert len(clock.sleeps) == 2 and all(0 <= s <= 8 for s in clock.sleeps)


def test_task_timeout() -> None:
    async def hang(call: TaskCall) -> Any:
        await asyncio.Event().wait()

    machine = one({"Type": "Task", "Resource": "arn:aws:states:::hang", "TimeoutSeconds": 3})
    with pytest.raises(StatesError) as exc:
        run(machine, {}, echo_integrations(hang=hang))
    assert exc.value.error == "States.Timeout"


def test_data_limit() -> None:
    async def big(call: TaskCall) -> Any:
        return "x" * (256 * 1024 + 1)

    machine = one({"Type": "Task", "Resource": "arn:aws:states:::big",
                   "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "S"}]})
    with pytest.raises(StatesError) as exc:
        run(machine, {}, echo_integrations(big=big))
    assert exc.value.error == "States.DataLimitExceeded"


# ---------------------------------------------------------------- parallel & map

def test_parallel_outputs_in_branch_order() -> None:
    machine = one({"Type": "Parallel", "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 2, "Next": "A2"},
                                    "A2": {"Type": "Pass", "Result": "a", "End": True}}},
        {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": "b", "End": True}}}],
        "ResultSelector": {"first.$": "$[0]", "all.$": "$"}})
    output, recorder, _ = run(machine, {})
    assert output == {"first": "a", "all": ["a", "b"]}
    assert recorder.types()[:2] == ["ParallelStateEntered", "ParallelStateStarted"]
    assert recorder.types()[-2:] == ["ParallelStateSucceeded", "ParallelStateExited"]


def test_parallel_branch_failure_is_caught() -> None:
    machine = {"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Branches": [
            {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "c"}}}],
            "Catch": [{"ErrorEquals": ["E"], "Next": "Done"}], "End": True},
        "Done": {"Type": "Succeed"}}}
    output, recorder, _ = run(machine, {"i": 1})
    assert output == {"Error": "E", "Cause": "c"}
    assert "ParallelStateFailed" in recorder.types()


def test_map_items_selector_and_concurrency() -> None:
    running = 0
    peak = 0

    async def track(call: TaskCall) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return call.parameters["v"] * 10

    machine = one({"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                   "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
                   "ItemProcessor": {"StartAt": "T", "States": {
                       "T": {"Type": "Task", "Resource": "arn:aws:states:::track",
                             "End": True}}}})
    output, recorder, _ = run(machine, {"items": [1, 2, 3, 4, 5]},
                              echo_integrations(track=track))
    assert output == [10, 20, 30, 40, 50]
    assert peak == 2
    types = recorder.types()
    assert types.count("MapIterationStarted") == 5 and types.count("MapIterationSucceeded") == 5
    assert recorder.events[1][3] == {"length": 5}


def test_map_tolerated_failures() -> None:
    fail_on_odd = {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"Variable": "$", "NumericEquals": 1, "Next": "F"}], "Default": "OK"},
        "F": {"Type": "Fail", "Error": "Odd"},
        "OK": {"Type": "Pass", "End": True}}}
    machine = one({"Type": "Map", "Iterator": fail_on_odd, "ToleratedFailureCount": 1})
    output, _, _ = run(machine, [0, 1, 2])
    assert output[0] == 0 and output[1]["Error"] == "Odd"
    with pytest.raises(StatesError) as exc:
        run(one({"Type": "Map", "Iterator": fail_on_odd, "ToleratedFailurePercentage": 10}),
            [1, 1, 0])
    assert exc.value.error == "States.ExceedToleratedFailureThreshold"
    with pytest.raises(StatesError) as exc:
        run(one({"Type": "Map", "Iterator": fail_on_odd}), [0, 1])
    assert exc.value.error == "Odd"


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("machine, fragment", [
    ({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nope"}}},
     "MISSING_TRANSITION_TARGET: Missing 'Next' target: Nope at /States/A/Next"),
    ({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}, "at /States/A"),
    ({"StartAt": "A", "States": {"A": {"Type": "Bogus", "End": True}}}, "/States/A/Type"),
    ({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True, "Foo": 1}}},
     "Field 'Foo' is not supported at /States/A/Foo"),
    ({"StartAt": "A", "States": {"A": {"Type": "Task", "End": True}}}, "/States/A/Resource"),
    ({"StartAt": "A", "States": {"A": {"Type": "Wait", "End": True}}}, "Exactly one of"),
    ({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [
        {"Variable": "$.x", "Next": "A"}]}}}, "/States/A/Choices[0]"),
    ({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True,
                                       "Parameters": {"x.$": "States.Bad()"}}}},
     "/States/A/Parameters/x.$"),
    ({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": True,
                                       "Retry": [{"ErrorEquals": ["States.ALL", "X"]}]}}},
     "States.ALL"),
    ({"StartAt": "A", "States": {"A": {"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": "B", "States": {"B": {"Type": "Pass", "Next": "Z"}}}]}}},
     "/States/A/Branches[0]/States/B/Next"),
])
def test_invalid_definitions(machine: dict[str, Any], fragment: str) -> None:
    with pytest.raises(definition.InvalidDefinition) as exc:
        definition.parse(json.dumps(machine))
    assert str(exc.value).startswith("Invalid State Machine Definition: '")
    assert fragment in str(exc.value)


def test_invalid_json_definition() -> None:
    with pytest.raises(definition.InvalidDefinition) as exc:
        definition.parse("{not json")
    assert "INVALID_JSON_DESCRIPTION" in str(exc.value)
