"""`.sync` Batch Tasks that end early: TimeoutSeconds, HeartbeatSeconds (the job sends
SendTaskHeartbeat with `$$.Task.Token`) and StopExecution all stop the job they started."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from batch_helpers import Env, make_env
from conftest import Server
from sfn_helpers import machine, run, task, wait_done

SYNC = "arn:aws:states:::batch:submitJob.sync"
# argv: token, endpoint, heartbeats to send (every 0.4 s), then seconds to sleep silently.
BEATING = """
import sys, time, boto3
sfn = boto3.client("stepfunctions", endpoint_url=sys.argv[2], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
for _ in range(int(sys.argv[3])):
    sfn.send_task_heartbeat(taskToken=sys.argv[1])
    time.sleep(0.4)
time.sleep(float(sys.argv[4]))
"""


@pytest.fixture
def env(server: Server) -> Env:
    return make_env(server.client("batch"))


def history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = sfn.get_execution_history(executionArn=arn,
                                                            maxResults=1000)["events"]
    return events


def submitted_job(sfn: Any, arn: str, deadline: float = 10) -> str:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for event in history(sfn, arn):
            if event["type"] == "TaskSubmitted":
                details = event["taskSubmittedEventDetails"]
                assert (details["resourceType"], details["resource"]) == ("batch",
                                                                          "submitJob.sync")
                return str(json.loads(details["output"])["JobId"])
        time.sleep(0.05)
    raise AssertionError(f"no TaskSubmitted event in {arn}")


def test_timeout_terminates_the_job(sfn: Any, env: Env) -> None:
    definition = env.definition(["sleep", "30"])
    started = time.monotonic()
    done = run(sfn, task(SYNC, {"JobName": "slow", "JobQueue": env.queue,
                                "JobDefinition": definition}, TimeoutSeconds=2), None, 20)
    assert (done["status"], done["error"]) == ("FAILED", "States.Timeout")
    assert "cause" not in done and time.monotonic() - started < 10
    events = history(sfn, done["executionArn"])
    types = [e["type"] for e in events]
    assert types == ["ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted",
                     "TaskSubmitted", "TaskTimedOut", "ExecutionFailed"]
    assert events[2]["taskScheduledEventDetails"]["timeoutInSeconds"] == 2
    assert events[5]["taskTimedOutEventDetails"] == {
        "resourceType": "batch", "resource": "submitJob.sync", "error": "States.Timeout"}
    job = env.wait(submitted_job(sfn, done["executionArn"]), timeout=10)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == (f"The Task state in AWS Step Functions execution "
                                   f"[{done['executionArn']}] which was managing this "
                                   f"resource timed out")


def test_stop_execution_terminates_the_job(sfn: Any, env: Env) -> None:
    definition = env.definition(["sleep", "30"])
    arn = machine(sfn, task(SYNC, {"JobName": "stopped", "JobQueue": env.queue,
                                   "JobDefinition": definition}))
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    job_id = submitted_job(sfn, execution)
    sfn.stop_execution(executionArn=execution, error="Halt", cause="enough")
    assert wait_done(sfn, execution)["status"] == "ABORTED"
    job = env.wait(job_id, timeout=10)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == (f"The Task state in AWS Step Functions execution "
                                   f"[{execution}] which was managing this resource was "
                                   f"aborted")


def beating_task(env: Env, server: Server, beats: int, then_sleep: float,
                 **extra: Any) -> dict[str, Any]:
    definition = env.definition([sys.executable, "-c", BEATING, "Ref::token", "Ref::url",
                                 "Ref::beats", "Ref::sleep"])
    return task(SYNC, {"JobName": "beating", "JobQueue": env.queue,
                       "JobDefinition": definition,
                       "Parameters": {"token.$": "$$.Task.Token", "url": server.url,
                                      "beats": str(beats), "sleep": str(then_sleep)}},
                **extra)


def test_heartbeats_keep_a_sync_job_alive(sfn: Any, env: Env, server: Server) -> None:
    # About 3 s of work with a heartbeat every 0.4 s outlives HeartbeatSeconds=2.
    definition = beating_task(env, server, 7, 0.2, HeartbeatSeconds=2)
    done = run(sfn, definition, None, 30)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    job = json.loads(done["output"])
    assert job["Status"] == "SUCCEEDED"
    assert (done["stopDate"] - done["startDate"]).total_seconds() > 2.5
    assert {"Name": "MANAGED_BY_AWS", "Value": "STARTED_BY_STEP_FUNCTIONS"} in \
        job["Container"]["Environment"]
    scheduled = history(sfn, done["executionArn"])[2]["taskScheduledEventDetails"]
    assert scheduled["heartbeatInSeconds"] == 2


def test_missed_heartbeat_times_out_and_terminates(sfn: Any, env: Env,
                                                   server: Server) -> None:
    state = beating_task(env, server, 1, 30, HeartbeatSecondsPath="$.beat")["States"]["T"]
    del state["End"]
    definition = {"StartAt": "T", "States": {
        "T": {**state, "Next": "Done", "ResultPath": "$.error",
              "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.error",
                         "Next": "Done"}]},
        "Done": {"Type": "Pass", "End": True}}}
    done = run(sfn, definition, {"beat": 2}, 30)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert json.loads(done["output"])["error"]["Error"] == "States.Timeout"
    events = history(sfn, done["executionArn"])
    timed_out = next(e for e in events if e["type"] == "TaskTimedOut")
    assert timed_out["taskTimedOutEventDetails"]["error"] == "States.Timeout"
    job = env.wait(submitted_job(sfn, done["executionArn"]), timeout=10)
    assert job["status"] == "FAILED" and job["statusReason"].endswith("timed out")
