"""Task tokens through boto3: `.waitForTaskToken`, activities, heartbeats."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sfn_helpers import machine, unique, wait_done


def history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = sfn.get_execution_history(executionArn=arn)["events"]
    return events


def wait_for_event(sfn: Any, arn: str, kind: str, deadline: float = 10) -> dict[str, Any]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for event in history(sfn, arn):
            if event["type"] == kind:
                return event
        time.sleep(0.02)
    raise AssertionError(f"no {kind} event in {arn}")


def token_machine(sfn: Any, bucket: str, **extra: Any) -> str:
    return machine(sfn, {"StartAt": "T", "States": {"T": {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:s3:putObject.waitForTaskToken",
        "Parameters": {"Bucket": bucket, "Key": "token",
                       "Body": {"token.$": "$$.Task.Token", "n.$": "$.n"}},
        "End": True, **extra}}})


def read_token(s3: Any, bucket: str, deadline: float = 10) -> dict[str, Any]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            found: dict[str, Any] = json.loads(
                s3.get_object(Bucket=bucket, Key="token")["Body"].read())
            return found
        except ClientError:
            time.sleep(0.02)
    raise AssertionError("the task token never reached S3")


def test_wait_for_task_token_success(sfn: Any, s3: Any, bucket: str) -> None:
    arn = token_machine(sfn, bucket)
    execution = sfn.start_execution(stateMachineArn=arn, input='{"n": 5}')["executionArn"]
    sent = read_token(s3, bucket)
    assert sent["n"] == 5
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    sfn.send_task_heartbeat(taskToken=sent["token"])
    sfn.send_task_success(taskToken=sent["token"], output='{"answer": 42}')
    done = wait_done(sfn, execution)
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"answer": 42}
    types = [e["type"] for e in history(sfn, execution)]
    assert types[-5:] == ["TaskStarted", "TaskSubmitted", "TaskSucceeded", "TaskStateExited",
                          "ExecutionSucceeded"]
    with pytest.raises(ClientError) as exc:
        sfn.send_task_success(taskToken=sent["token"], output="{}")
    assert exc.value.response["Error"]["Code"] == "TaskTimedOut"
    with pytest.raises(ClientError) as exc:
        sfn.send_task_success(taskToken="garbage", output="{}")
    assert exc.value.response["Error"]["Code"] == "InvalidToken"


def test_wait_for_task_token_failure_is_catchable(sfn: Any, s3: Any, bucket: str) -> None:
    arn = machine(sfn, {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:putObject"
              ".waitForTaskToken",
              "Parameters": {"Bucket": bucket, "Key": "token",
                             "Body": {"token.$": "$$.Task.Token"}},
              "Catch": [{"ErrorEquals": ["Worker.Broke"], "Next": "Caught"}], "End": True},
        "Caught": {"Type": "Pass", "End": True}}})
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    sent = read_token(s3, bucket)
    with pytest.raises(ClientError) as exc:
        sfn.send_task_success(taskToken=sent["token"], output="{not json")
    assert exc.value.response["Error"]["Code"] == "InvalidOutput"
    sfn.send_task_failure(taskToken=sent["token"], error="Worker.Broke", cause="disk")
    done = wait_done(sfn, execution)
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"]) == {"Error": "Worker.Broke", "Cause": "disk"}


def test_heartbeat_timeout(sfn: Any, s3: Any, bucket: str) -> None:
    arn = token_machine(sfn, bucket, HeartbeatSeconds=1)
    execution = sfn.start_execution(stateMachineArn=arn, input='{"n": 1}')["executionArn"]
    sent = read_token(s3, bucket)
    for _ in range(3):  # heartbeats keep it alive past one HeartbeatSeconds
        time.sleep(0.5)
        sfn.send_task_heartbeat(taskToken=sent["token"])
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    done = wait_done(sfn, execution, 5)
    # AWS's history names a missed heartbeat States.Timeout, with no cause.
    assert (done["status"], done["error"]) == ("FAILED", "States.Timeout")
    assert "cause" not in done
    timed_out = history(sfn, execution)[-2]
    assert timed_out["type"] == "TaskTimedOut"
    assert timed_out["taskTimedOutEventDetails"] == {
        "resourceType": "aws-sdk", "resource": "s3:putObject.waitForTaskToken",
        "error": "States.Timeout"}
    assert history(sfn, execution)[-1]["executionFailedEventDetails"] == {
        "error": "States.Timeout"}
    with pytest.raises(ClientError) as exc:
        sfn.send_task_heartbeat(taskToken=sent["token"])
    assert exc.value.response["Error"]["Code"] == "TaskTimedOut"


def test_heartbeat_timeout_is_caught_as_heartbeat_timeout(sfn: Any, s3: Any,
                                                          bucket: str) -> None:
    """AWS documents States.HeartbeatTimeout as usable in Retry and Catch only."""
    task = json.loads(sfn.describe_state_machine(stateMachineArn=token_machine(
        sfn, bucket))["definition"])["States"]["T"]
    del task["End"]
    caught = machine(sfn, {"StartAt": "T", "States": {
        "T": {**task, "HeartbeatSecondsPath": "$.beat", "Next": "Done",
              "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "Done"}]},
        "Done": {"Type": "Pass", "End": True}}})
    execution = sfn.start_execution(stateMachineArn=caught,
                                    input='{"n": 1, "beat": 1}')["executionArn"]
    done = wait_done(sfn, execution, 5)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert json.loads(done["output"])["Error"] == "States.Timeout"
    scheduled = history(sfn, execution)[2]["taskScheduledEventDetails"]
    assert scheduled["heartbeatInSeconds"] == 1


def test_activity_crud(sfn: Any) -> None:
    name = unique("act")
    arn = sfn.create_activity(name=name)["activityArn"]
    assert arn == f"arn:aws:states:us-east-1:000000000000:activity:{name}"
    assert sfn.create_activity(name=name)["activityArn"] == arn
    described = sfn.describe_activity(activityArn=arn)
    assert described["name"] == name and described["activityArn"] == arn
    listed = [a["activityArn"] for a in sfn.list_activities()["activities"]]
    assert arn in listed
    sfn.delete_activity(activityArn=arn)
    with pytest.raises(ClientError) as exc:
        sfn.describe_activity(activityArn=arn)
    assert exc.value.response["Error"]["Code"] == "ActivityDoesNotExist"
    with pytest.raises(ClientError) as exc:
        sfn.create_activity(name="bad name")
    assert exc.value.response["Error"]["Code"] == "InvalidName"


def test_activity_worker_round_trip(sfn: Any) -> None:
    activity = sfn.create_activity(name=unique("work"))["activityArn"]
    arn = machine(sfn, {"StartAt": "A", "States": {"A": {
        "Type": "Task", "Resource": activity, "Parameters": {"x.$": "$.x"},
        "HeartbeatSeconds": 5, "TimeoutSeconds": 30, "End": True}}})
    got: dict[str, Any] = {}

    def worker() -> None:  # polls before the task exists: the long poll hands it over
        got.update(sfn.get_activity_task(activityArn=activity, workerName="w1"))

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.2)
    execution = sfn.start_execution(stateMachineArn=arn, input='{"x": 7}')["executionArn"]
    thread.join(10)
    assert json.loads(got["input"]) == {"x": 7}
    started = wait_for_event(sfn, execution, "ActivityStarted")
    assert started["activityStartedEventDetails"] == {"workerName": "w1"}
    sfn.send_task_success(taskToken=got["taskToken"], output='{"y": 8}')
    done = wait_done(sfn, execution)
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"y": 8}
    types = [e["type"] for e in history(sfn, execution)]
    assert types[1:6] == ["TaskStateEntered", "ActivityScheduled", "ActivityStarted",
                          "ActivitySucceeded", "TaskStateExited"]
    scheduled = history(sfn, execution)[2]["activityScheduledEventDetails"]
    assert scheduled["resource"] == activity and scheduled["heartbeatInSeconds"] == 5


def test_activity_heartbeat_timeout_and_queued_task(sfn: Any) -> None:
    activity = sfn.create_activity(name=unique("slow"))["activityArn"]
    arn = machine(sfn, {"StartAt": "A", "States": {"A": {
        "Type": "Task", "Resource": activity, "HeartbeatSeconds": 1, "End": True}}})
    execution = sfn.start_execution(stateMachineArn=arn, input='{"q": 1}')["executionArn"]
    wait_for_event(sfn, execution, "ActivityScheduled")
    task = sfn.get_activity_task(activityArn=activity)  # queued before the poll
    assert json.loads(task["input"]) == {"q": 1}
    done = wait_done(sfn, execution, 5)
    assert (done["status"], done["error"]) == ("FAILED", "States.Timeout")
    timed_out = history(sfn, execution)[-2]
    assert timed_out["type"] == "ActivityTimedOut"
    assert timed_out["activityTimedOutEventDetails"] == {"error": "States.Timeout"}


def test_activity_that_does_not_exist_fails(sfn: Any) -> None:
    gone = "arn:aws:states:us-east-1:000000000000:activity:" + unique("gone")
    arn = machine(sfn, {"StartAt": "A", "States": {"A": {
        "Type": "Task", "Resource": gone, "End": True}}})
    done = wait_done(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"], 5)
    assert (done["status"], done["error"]) == ("FAILED", "States.Runtime")
