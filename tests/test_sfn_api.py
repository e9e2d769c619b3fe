"""Step Functions through boto3 and the aws CLI against a real kobako process."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server, start_server
from sfn_helpers import ROLE, machine, unique, wait_done

PASS = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_state_machine_crud(sfn: Any) -> None:
    name = unique("crud")
    created = sfn.create_state_machine(name=name, definition=PASS, roleArn=ROLE,
                                       tags=[{"key": "team", "value": "a"}])
    arn = created["stateMachineArn"]
    assert arn == f"arn:aws:states:us-east-1:000000000000:stateMachine:{name}"
    again = sfn.create_state_machine(name=name, definition=PASS, roleArn=ROLE)
    assert again["stateMachineArn"] == arn
    with pytest.raises(ClientError) as exc:
        sfn.create_state_machine(name=name, definition=PASS.replace('"P"', '"Q"'), roleArn=ROLE)
    assert code(exc) == "StateMachineAlreadyExists"
    described = sfn.describe_state_machine(stateMachineArn=arn)
    assert (described["name"], described["type"], described["status"]) == \
        (name, "STANDARD", "ACTIVE")
    assert described["definition"] == PASS
    new = json.dumps({"StartAt": "X", "States": {"X": {"Type": "Succeed"}}})
    sfn.update_state_machine(stateMachineArn=arn, definition=new)
    assert sfn.describe_state_machine(stateMachineArn=arn)["definition"] == new
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "team", "value": "a"}]
    sfn.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "dev"}])
    sfn.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "env", "value": "dev"}]
    sfn.delete_state_machine(stateMachineArn=arn)
    with pytest.raises(ClientError) as exc:
        sfn.describe_state_machine(stateMachineArn=arn)
    assert code(exc) == "StateMachineDoesNotExist"


def test_create_errors(sfn: Any) -> None:
    bad = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Gone"}}})
    with pytest.raises(ClientError) as exc:
        sfn.create_state_machine(name=unique("bad"), definition=bad, roleArn=ROLE)
    assert code(exc) == "InvalidDefinition"
    assert "/States/A/Next" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        sfn.create_state_machine(name="has space", definition=PASS, roleArn=ROLE)
    assert code(exc) == "InvalidName"
    with pytest.raises(ClientError) as exc:
        sfn.describe_state_machine(stateMachineArn="not-an-arn")
    assert code(exc) == "InvalidArn"
    with pytest.raises(ClientError) as exc:
        sfn.describe_execution(
            executionArn="arn:aws:states:us-east-1:000000000000:execution:nope:nope")
    assert code(exc) == "ExecutionDoesNotExist"


def test_list_state_machines_paginates(sfn: Any) -> None:
    arns = {machine(sfn, PASS) for _ in range(3)}
    seen: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = sfn.list_state_machines(maxResults=2, **token)
        assert len(page["stateMachines"]) <= 2
        seen += [m["stateMachineArn"] for m in page["stateMachines"]]
        if "nextToken" not in page:
            break
        token = {"nextToken": page["nextToken"]}
    assert arns <= set(seen) and len(seen) == len(set(seen))


def test_execution_lifecycle_and_history(sfn: Any) -> None:
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, $.b)"},
              "Next": "C"},
        "C": {"Type": "Choice", "Choices": [
            {"Variable": "$.sum", "NumericEquals": 3, "Next": "Done"}], "Default": "Bad"},
        "Bad": {"Type": "Fail", "Error": "Wrong"},
        "Done": {"Type": "Succeed"}}}
    arn = machine(sfn, definition)
    started = sfn.start_execution(stateMachineArn=arn, name="first", input='{"a":1,"b":2}')
    assert started["executionArn"] == arn.replace(":stateMachine:", ":execution:") + ":first"
    done = wait_done(sfn, started["executionArn"])
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"sum": 3}
    failed = sfn.start_execution(stateMachineArn=arn, input='{"a":1,"b":1}')
    done = wait_done(sfn, failed["executionArn"])
    assert (done["status"], done["error"]) == ("FAILED", "Wrong")
    history = sfn.get_execution_history(executionArn=started["executionArn"])["events"]
    types = [e["type"] for e in history]
    assert types == ["ExecutionStarted", "PassStateEntered", "PassStateExited",
                     "ChoiceStateEntered", "ChoiceStateExited", "SucceedStateEntered",
                     "SucceedStateExited", "ExecutionSucceeded"]
    assert [e["id"] for e in history] == list(range(1, 9))
    assert [e["previousEventId"] for e in history] == list(range(0, 8))
    assert history[1]["stateEnteredEventDetails"] == {"name": "T", "input": '{"a":1,"b":2}'}
    page = sfn.get_execution_history(executionArn=started["executionArn"], maxResults=3,
                                     reverseOrder=True, includeExecutionData=False)
    assert [e["id"] for e in page["events"]] == [8, 7, 6]
    assert "output" not in page["events"][0]["executionSucceededEventDetails"]
    rest = sfn.get_execution_history(executionArn=started["executionArn"], maxResults=3,
                                     reverseOrder=True, nextToken=page["nextToken"])
    assert [e["id"] for e in rest["events"]] == [5, 4, 3]
    listed = sfn.list_executions(stateMachineArn=arn, statusFilter="FAILED")["executions"]
    assert [e["executionArn"] for e in listed] == [failed["executionArn"]]
    first = sfn.list_executions(stateMachineArn=arn, maxResults=1)
    second = sfn.list_executions(stateMachineArn=arn, maxResults=1,
                                 nextToken=first["nextToken"])
    assert {first["executions"][0]["name"], second["executions"][0]["name"]} == \
        {"first", failed["executionArn"].rsplit(":", 1)[1]}
    with pytest.raises(ClientError) as exc:
        sfn.start_execution(stateMachineArn=arn, name="first", input='{"a":1,"b":2}')
    assert code(exc) == "ExecutionAlreadyExists"


def test_start_is_idempotent_and_stop_aborts(sfn: Any) -> None:
    arn = machine(sfn, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60,
                                                         "End": True}}})
    one = sfn.start_execution(stateMachineArn=arn, name="same", input='{"k":1}')
    two = sfn.start_execution(stateMachineArn=arn, name="same", input='{"k":1}')
    assert one["executionArn"] == two["executionArn"]
    with pytest.raises(ClientError) as exc:
        sfn.start_execution(stateMachineArn=arn, name="same", input='{"k":2}')
    assert code(exc) == "ExecutionAlreadyExists"
    with pytest.raises(ClientError) as exc:
        sfn.start_execution(stateMachineArn=arn, input="{nope")
    assert code(exc) == "InvalidExecutionInput"
    running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
    assert [e["name"] for e in running] == ["same"]
    sfn.stop_execution(executionArn=one["executionArn"], error="Halt", cause="test")
    done = sfn.describe_execution(executionArn=one["executionArn"])
    assert (done["status"], done["error"], done["cause"]) == ("ABORTED", "Halt", "test")
    events = sfn.get_execution_history(executionArn=one["executionArn"])["events"]
    assert events[-1]["type"] == "ExecutionAborted"
    assert events[-1]["executionAbortedEventDetails"] == {"error": "Halt", "cause": "test"}


def test_nested_start_execution_sync(sfn: Any) -> None:
    child = machine(sfn, {"StartAt": "D", "States": {"D": {
        "Type": "Pass", "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"}, "End": True}}})
    parent = machine(sfn, {"StartAt": "Run", "States": {"Run": {
        "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
        "Parameters": {"StateMachineArn": child, "Input": {"n.$": "$.n"}},
        "OutputPath": "$.Output", "End": True}}})
    done = wait_done(sfn, sfn.start_execution(stateMachineArn=parent,
                                              input='{"n": 21}')["executionArn"])
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["output"]) == {"doubled": 42}
    assert len(sfn.list_executions(stateMachineArn=child)["executions"]) == 1


def test_unknown_integration_fails_fast(sfn: Any) -> None:
    arn = machine(sfn, {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": True}}})
    done = wait_done(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"], 5)
    assert done["status"] == "FAILED" and done["error"] == "States.Runtime"
    assert "arn:aws:states:::sqs:sendMessage" in done["cause"]
    types = [e["type"] for e in sfn.get_execution_history(
        executionArn=done["executionArn"])["events"]]
    assert types[-3:] == ["TaskStarted", "TaskFailed", "ExecutionFailed"]


def test_execution_timeout(sfn: Any) -> None:
    arn = machine(sfn, {"StartAt": "W", "TimeoutSeconds": 1, "States": {
        "W": {"Type": "Wait", "Seconds": 30, "End": True}}})
    done = wait_done(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"], 5)
    assert done["status"] == "TIMED_OUT"
    assert "error" not in done and "cause" not in done  # as AWS's DescribeExecution
    assert done["redriveStatus"] == "REDRIVABLE"
    last = sfn.get_execution_history(executionArn=done["executionArn"])["events"][-1]
    assert last["type"] == "ExecutionTimedOut"
    assert "executionTimedOutEventDetails" not in last


def test_wait_survives_kill_9(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        sfn = server.client("stepfunctions")
        arn = machine(sfn, {"StartAt": "W", "States": {
            "W": {"Type": "Wait", "Seconds": 3, "Next": "P"},
            "P": {"Type": "Pass", "Result": "after", "ResultPath": "$.r", "End": True}}})
        execution = sfn.start_execution(stateMachineArn=arn, input='{"k":1}')["executionArn"]
        end = time.monotonic() + 5
        while time.monotonic() < end:
            history = sfn.get_execution_history(executionArn=execution)["events"]
            if history[-1]["type"] == "WaitStateEntered":
                break
            time.sleep(0.05)
        started = time.monotonic()
        server.kill()
    finally:
        server.stop()
    server = start_server(tmp_path / "data")
    try:
        sfn = server.client("stepfunctions")
        done = wait_done(sfn, execution, 10)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == {"k": 1, "r": "after"}
        assert time.monotonic() - started >= 2.5  # the deadline held, it did not restart
        types = [e["type"] for e in sfn.get_execution_history(executionArn=execution)["events"]]
        assert types.count("WaitStateEntered") == 1
        assert types[-1] == "ExecutionSucceeded"
    finally:
        server.stop()
    assert " -> 500 " not in server.log()


def test_aws_cli(server: Server, tmp_path: Path) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "HOME": str(tmp_path)}
    env.pop("AWS_PROFILE", None)

    def aws(*args: str) -> Any:
        result = subprocess.run(["aws", "--endpoint-url", server.url, "stepfunctions", *args],
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    created = aws("create-state-machine", "--name", unique("cli"), "--definition", PASS,
                  "--role-arn", ROLE)
    started = aws("start-execution", "--state-machine-arn", created["stateMachineArn"],
                  "--input", '{"from": "cli"}')
    end = time.monotonic() + 15
    while True:
        described = aws("describe-execution", "--execution-arn", started["executionArn"])
        if described["status"] != "RUNNING" or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"from": "cli"}


def test_bad_input_is_4xx(sfn: Any) -> None:
    arn = machine(sfn, PASS)
    calls = [
        (lambda: sfn.list_executions(stateMachineArn=arn, nextToken="@@@"), "InvalidToken"),
        (lambda: sfn.update_state_machine(stateMachineArn=arn), "MissingRequiredParameter"),
        (lambda: sfn.update_state_machine(stateMachineArn=arn, definition="{"),
         "InvalidDefinition"),
        (lambda: sfn.stop_execution(
            executionArn="arn:aws:states:us-east-1:000000000000:execution:a:b"),
         "ExecutionDoesNotExist"),
        (lambda: sfn.start_execution(stateMachineArn=arn + "-gone"), "StateMachineDoesNotExist"),
        (lambda: sfn.list_tags_for_resource(resourceArn=arn + "-gone"), "ResourceNotFound"),
        (lambda: sfn.describe_execution(executionArn=arn), "InvalidArn"),
        (lambda: sfn.start_execution(stateMachineArn=arn, name="a/b"), "InvalidName"),
    ]
    for call, expected in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert code(exc) == expected
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
