"""JSONata states, workflow variables and their scopes (AWS's documented examples)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any

import pytest

from kobako.stepfunctions import definition
from kobako.stepfunctions.clock import FakeClock
from kobako.stepfunctions.engine import Cursor, FailState, Frame, Interpreter
from kobako.stepfunctions.errors import StatesError
from kobako.stepfunctions.integrations import Integrations, TaskCall

CONTEXT = {"Execution": {"Id": "arn:aws:states:us-east-1:1:execution:m:e", "Name": "e"},
           "StateMachine": {"Id": "sm"}}


class Recorder:
    def __init__(self) -> None:
        self.types: list[str] = []
        self.cursors: list[Cursor] = []

    def event(self, type: str, details: dict[str, Any] | None, previous: int,
              cursor: Cursor | None = None) -> int:
        self.types.append(type)
        if cursor is not None:
            self.cursors.append(cursor)
        return len(self.types)

    def checkpoint(self, cursor: Cursor) -> None:
        self.cursors.append(cursor)


def run(machine: dict[str, Any], data: Any = None,
        integrations: Integrations | None = None) -> tuple[Any, Recorder]:
    definition.parse(json.dumps(machine))
    recorder = Recorder()
    interpreter = Interpreter(recorder, FakeClock(), integrations or Integrations(),
                              "arn:aws:states:us-east-1:1:execution:m:e", "us-east-1", "1")
    output = asyncio.run(interpreter.run(
        machine, Cursor(machine["StartAt"], {} if data is None else data),
        Frame(dict(CONTEXT), durable=True)))
    return output, recorder


def jsonata(states: dict[str, Any], start: str | None = None) -> dict[str, Any]:
    return {"QueryLanguage": "JSONata", "StartAt": start or next(iter(states)),
            "States": states}


def test_output_transforms_the_input() -> None:
    machine = jsonata({"P": {"Type": "Pass", "End": True, "Output": {
        "customer": "{% $states.input.customer %}",
        "total": "{% $sum($states.input.items.price) %}",
        "literal": "not an expression", "execution": "{% $states.context.Execution.Name %}"}}})
    out, _ = run(machine, {"customer": "ann", "items": [{"price": 2}, {"price": 3.5}]})
    assert out == {"customer": "ann", "total": 5.5, "literal": "not an expression",
                   "execution": "e"}


def test_aws_functions() -> None:
    machine = jsonata({"P": {"Type": "Pass", "End": True, "Output": {
        "partition": "{% $partition([1,2,3,4,5], 2) %}",
        "range": "{% $range(0, 10, 2) %}",
        "hash": "{% $hash('Hello World', 'SHA-256') %}",
        "md5": "{% $hash('Hello World', 'MD5') %}",
        "random": "{% $random() %}",
        "seeded": "{% $random(7) = $random(7) %}",
        "uuid": "{% $uuid() %}",
        "parse": "{% $parse('{\"a\": [1, {\"b\": true}]}') %}"}}})
    out, _ = run(machine)
    assert out["partition"] == [[1, 2], [3, 4], [5]]
    assert out["range"] == [0, 2, 4, 6, 8, 10]
    assert out["hash"] == hashlib.sha256(b"Hello World").hexdigest()
    assert out["md5"] == hashlib.md5(b"Hello World").hexdigest()
    assert 0 <= out["random"] < 1 and out["seeded"] is True
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
                        out["uuid"])
    assert out["parse"] == {"a": [1, {"b": True}]}


def test_task_arguments_result_and_assign() -> None:
    registry = Integrations()

    async def price(call: TaskCall) -> Any:
        return {"price": call.parameters["qty"] * 10}

    registry.register("arn:aws:states:::price", price)
    machine = jsonata({
        "Init": {"Type": "Pass", "Assign": {"productName": "product1", "count": 42,
                                            "available": True}, "Next": "Price"},
        "Price": {"Type": "Task", "Resource": "arn:aws:states:::price",
                  "Arguments": {"qty": "{% $states.input.qty %}"},
                  "Assign": {"total": "{% $states.result.price %}"},
                  "Output": "{% $states.result %}", "Next": "Done"},
        "Done": {"Type": "Pass", "End": True, "Output": {
            "name": "{% $productName %}", "count": "{% $count %}",
            "available": "{% $available %}", "total": "{% $total %}",
            "in": "{% $states.input %}"}}})
    out, recorder = run(machine, {"qty": 3}, registry)
    assert out == {"name": "product1", "count": 42, "available": True, "total": 30,
                   "in": {"price": 30}}
    assert recorder.cursors[-1].variables == {"productName": "product1", "count": 42,
                                              "available": True, "total": 30}


def test_assign_and_output_see_the_variables_before_the_state() -> None:
    machine = jsonata({
        "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "B"},
        "B": {"Type": "Pass", "Assign": {"x": "{% $x + 1 %}", "y": "{% $x %}"},
              "Output": {"seen": "{% $x %}"}, "Next": "C"},
        "C": {"Type": "Pass", "End": True, "Output": {"x": "{% $x %}", "y": "{% $y %}",
                                                      "prev": "{% $states.input %}"}}})
    out, _ = run(machine)
    assert out == {"x": 2, "y": 1, "prev": {"seen": 1}}


def test_map_and_parallel_scopes() -> None:
    machine = jsonata({
        "Set": {"Type": "Pass", "Assign": {"base": 100}, "Next": "Map"},
        "Map": {"Type": "Map", "Items": "{% $states.input.nums %}",
                "ItemSelector": {"n": "{% $states.context.Map.Item.Value %}",
                                 "i": "{% $states.context.Map.Item.Index %}"},
                "ItemProcessor": {"StartAt": "Add", "States": {
                    "Add": {"Type": "Pass", "Assign": {"inner": "{% $states.input.n %}"},
                            "Next": "Out"},
                    "Out": {"Type": "Pass", "End": True,
                            "Output": "{% $base + $inner + $states.input.i %}"}}},
                "Assign": {"sum": "{% $sum($states.result) %}"}, "Next": "Par"},
        "Par": {"Type": "Parallel", "Arguments": {"k": "{% $sum %}"}, "Branches": [
            {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "End": True,
                                                "Output": "{% $states.input.k %}"}}},
            {"StartAt": "B2", "States": {"B2": {"Type": "Pass", "End": True,
                                                "Output": "{% $base %}"}}}],
                "Next": "End"},
        "End": {"Type": "Pass", "End": True, "Output": {
            "result": "{% $states.input %}", "sum": "{% $sum %}",
            "inner": "{% $exists($inner) %}"}}})
    out, _ = run(machine, {"nums": [1, 2]})
    assert out == {"result": [204, 100], "sum": 204, "inner": False}


def test_choice_condition_and_default() -> None:
    machine = jsonata({
        "C": {"Type": "Choice", "Choices": [
            {"Condition": "{% $states.input.n > 10 %}", "Next": "Big",
             "Assign": {"size": "big"}, "Output": {"n": "{% $states.input.n %}"}}],
            "Default": "Small", "Assign": {"size": "small"}},
        "Big": {"Type": "Pass", "End": True,
                "Output": {"size": "{% $size %}", "in": "{% $states.input %}"}},
        "Small": {"Type": "Succeed", "Output": {"size": "{% $size %}"}}})
    assert run(machine, {"n": 11, "x": 1})[0] == {"size": "big", "in": {"n": 11}}
    assert run(machine, {"n": 1})[0] == {"size": "small"}
    bad = jsonata({"C": {"Type": "Choice", "Choices": [
        {"Condition": "{% $states.input.n %}", "Next": "S"}]}, "S": {"Type": "Succeed"}})
    with pytest.raises(StatesError) as exc:
        run(bad, {"n": 1})
    assert exc.value.error == "States.QueryEvaluationError"


def test_catch_error_output_and_fail_expressions() -> None:
    machine = jsonata({
        "Boom": {"Type": "Task", "Resource": "arn:aws:states:::nope", "Next": "Ok",
                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handled",
                            "Assign": {"why": "{% $states.errorOutput.Error %}"},
                            "Output": {"caught": "{% $states.errorOutput.Error %}"}}]},
        "Ok": {"Type": "Succeed"},
        "Handled": {"Type": "Fail", "Error": "{% 'Handled.' & $why %}",
                    "Cause": "{% $string($states.input) %}"}})
    registry = Integrations()

    async def broken(call: TaskCall) -> Any:
        raise StatesError("Custom.Error", "bad")

    registry.register("arn:aws:states:::nope", broken)
    with pytest.raises(FailState) as exc:
        run(machine, None, registry)
    assert exc.value.error == "Handled.Custom.Error"
    assert json.loads(exc.value.cause) == {"caught": "Custom.Error"}


def test_state_level_jsonata_in_a_jsonpath_machine_and_jsonpath_assign() -> None:
    machine = {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Parameters": {"v.$": "$.v"},
              "Assign": {"fromPath.$": "$.v", "literal": 5, "ctx.$": "$$.Execution.Name"},
              "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"copy.$": "$fromPath", "deep.$": "$obj.k",
                                             "f.$": "States.Format('{}-{}', $literal, $ctx)"},
              "Assign": {"obj": {"k": 1}}, "Next": "C"},
        "C": {"Type": "Pass", "QueryLanguage": "JSONata", "End": True,
              "Output": {"in": "{% $states.input %}", "lit": "{% $literal %}"}}}}
    with pytest.raises(StatesError):  # $obj is not assigned before B reads it
        run(machine, {"v": 9})
    machine["States"]["B"]["Parameters"].pop("deep.$")
    out, _ = run(machine, {"v": 9})
    assert out == {"in": {"copy": 9, "f": "5-e"}, "lit": 5}


def test_wait_and_timeouts_take_expressions() -> None:
    registry = Integrations()

    async def slow(call: TaskCall) -> Any:
        await asyncio.sleep(0)
        return call.timeout_seconds

    registry.register("arn:aws:states:::slow", slow)
    machine = jsonata({
        "W": {"Type": "Wait", "Seconds": "{% $states.input.s %}", "Next": "T"},
        "T": {"Type": "Task", "Resource": "arn:aws:states:::slow",
              "TimeoutSeconds": "{% $states.input.s * 10 %}", "End": True}})
    out, recorder = run(machine, {"s": 2}, registry)
    assert out == 20.0 and "WaitStateExited" in recorder.types


@pytest.mark.parametrize("bad, where", [
    ({"Type": "Pass", "InputPath": "$.a", "End": True}, "/States/S/InputPath"),
    ({"Type": "Pass", "Output": "{% $states.input. %}", "End": True}, "/States/S"),
    ({"Type": "Pass", "Assign": {"bad-name": 1}, "End": True}, "/States/S/Assign/bad-name"),
    ({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsPresent": True, "Next": "S"}]},
     "/States/S/Choices[0]"),
])
def test_definition_errors(bad: dict[str, Any], where: str) -> None:
    with pytest.raises(definition.InvalidDefinition) as exc:
        definition.parse(json.dumps(jsonata({"S": bad})))
    assert where in str(exc.value)


def test_jsonpath_fields_rejected_in_jsonata_and_the_reverse() -> None:
    with pytest.raises(definition.InvalidDefinition):
        definition.parse(json.dumps({"StartAt": "S", "States": {
            "S": {"Type": "Pass", "Output": {"a": 1}, "End": True}}}))
    with pytest.raises(definition.InvalidDefinition):
        definition.parse(json.dumps(jsonata({"S": {
            "Type": "Pass", "QueryLanguage": "JSONPath", "End": True}})))
