"""Step Functions across `kill -9`: task tokens, Batch `.sync` jobs, Map Runs; the
25,000-event history limit."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from batch_helpers import make_env
from conftest import Server, start_server
from sfn_helpers import machine, wait_done


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token: dict[str, str] = {}
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **token)
        events += page["events"]
        if "nextToken" not in page:
            return events
        token = {"nextToken": page["nextToken"]}


def _until(check: Any, what: str, deadline: float = 15) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _restart(server: Server, data: Path) -> Server:
    server.kill()
    server.stop()
    return start_server(data)


def test_task_token_survives_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        s3 = server.client("s3")
        s3.create_bucket(Bucket="tokens-kept")
        sfn = server.client("stepfunctions")
        arn = machine(sfn, {"StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:putObject"
            ".waitForTaskToken",
            "Parameters": {"Bucket": "tokens-kept", "Key": "token",
                           "Body": {"token.$": "$$.Task.Token"}}, "End": True}}})
        execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
        token = _until(lambda: any(e["type"] == "TaskSubmitted"
                                   for e in _history(sfn, execution)) and json.loads(
            s3.get_object(Bucket="tokens-kept", Key="token")["Body"].read())["token"],
            "the token")
        server = _restart(server, data)
        sfn = server.client("stepfunctions")
        time.sleep(0.3)
        sfn.send_task_success(taskToken=token, output='{"after": "restart"}')
        done = wait_done(sfn, execution, 10)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == {"after": "restart"}
        types = [e["type"] for e in _history(sfn, execution)]
        assert types.count("TaskSubmitted") == 1 and types.count("TaskScheduled") == 1
    finally:
        server.stop()
    assert " -> 500 " not in server.log()


def test_batch_sync_reattaches_after_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        env = make_env(server.client("batch"))
        definition = env.definition(["sleep", "2"])
        sfn = server.client("stepfunctions")
        arn = machine(sfn, {"StartAt": "J", "States": {"J": {
            "Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync",
            "Parameters": {"JobName": "once", "JobQueue": env.queue,
                           "JobDefinition": definition}, "End": True}}})
        execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
        batch = server.client("batch")

        def submitted() -> list[dict[str, Any]]:
            jobs: list[dict[str, Any]] = []
            for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING",
                           "SUCCEEDED", "FAILED"):
                jobs += batch.list_jobs(jobQueue=env.queue, jobStatus=status)["jobSummaryList"]
            return jobs

        _until(submitted, "the job")
        time.sleep(0.3)  # the Task has recorded the job id and is waiting on it
        server = _restart(server, data)
        sfn = server.client("stepfunctions")
        batch = server.client("batch")
        done = wait_done(sfn, execution, 40)
        jobs = submitted()
        assert len(jobs) == 1, jobs
        assert done["status"] in ("SUCCEEDED", "FAILED"), done
        job_id = json.loads(done.get("output") or done["cause"])["JobId"]
        assert job_id == jobs[0]["jobId"]
    finally:
        server.stop()
    assert " -> 500 " not in server.log()


def test_distributed_map_reattaches_after_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        sfn = server.client("stepfunctions")
        arn = machine(sfn, {"StartAt": "M", "States": {"M": {
            "Type": "Map", "End": True, "ItemsPath": "$.items", "MaxConcurrency": 2,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED",
                                                  "ExecutionType": "STANDARD"},
                              "StartAt": "W", "States": {
                                  "W": {"Type": "Wait", "Seconds": 1, "End": True}}}}}})
        execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(
            {"items": [1, 2, 3, 4]}))["executionArn"]
        runs = _until(lambda: sfn.list_map_runs(executionArn=execution)["mapRuns"],
                      "the map run")
        time.sleep(0.3)
        server = _restart(server, data)
        sfn = server.client("stepfunctions")
        done = wait_done(sfn, execution, 20)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == [1, 2, 3, 4]
        assert [r["mapRunArn"] for r in sfn.list_map_runs(executionArn=execution)[
            "mapRuns"]] == [runs[0]["mapRunArn"]]
        children = sfn.list_executions(mapRunArn=runs[0]["mapRunArn"])["executions"]
        assert len(children) == 4 and {c["status"] for c in children} == {"SUCCEEDED"}
        types = [e["type"] for e in _history(sfn, execution)]
        assert types.count("MapRunStarted") == 1 and types.count("MapRunSucceeded") == 1
    finally:
        server.stop()
    assert " -> 500 " not in server.log()


def test_history_limit_fails_the_execution(server: Server) -> None:
    sfn = server.client("stepfunctions")
    loop = {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"Variable": "$.i", "NumericLessThan": 100_000, "Next": "Add"}],
            "Default": "Done"},
        "Add": {"Type": "Pass", "Parameters": {"i.$": "States.MathAdd($.i, 1)"},
                "Next": "C"},
        "Done": {"Type": "Succeed"}}}
    arn = machine(sfn, loop)
    execution = sfn.start_execution(stateMachineArn=arn, input='{"i": 0}')["executionArn"]
    done = wait_done(sfn, execution, 55)
    assert (done["status"], done["error"]) == ("FAILED", "States.Runtime")
    assert "25000" in done["cause"]
    last = sfn.get_execution_history(executionArn=execution, reverseOrder=True,
                                     maxResults=1)["events"][0]
    assert last["id"] == 25_000 and last["type"] == "ExecutionFailed"


def test_a_hundred_executions_in_flight_survive_kill_9(tmp_path: Path) -> None:
    """The issue's bar: kill -9 with 100 executions in flight (some in a Wait, some in an
    inline Map, some between Pass states); after the restart every one of them finishes,
    once, with the output its input gives, and none is lost or left RUNNING."""
    server = start_server(tmp_path / "data")
    definition = {"StartAt": "Tag", "States": {
        "Tag": {"Type": "Pass", "Next": "Pause", "Parameters": {
            "n.$": "$.n", "wait.$": "$.wait", "items.$": "States.ArrayRange(1, 4, 1)"}},
        "Pause": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "Each"},
        "Each": {"Type": "Map", "ItemsPath": "$.items", "ItemSelector": {
            "i.$": "$$.Map.Item.Value", "n.$": "$.n"}, "ItemProcessor": {
                "StartAt": "Mul", "States": {"Mul": {
                    "Type": "Pass", "Parameters": {"v.$": "States.MathAdd($.i, $.n)"},
                    "OutputPath": "$.v", "End": True}}},
            "ResultPath": "$.sums", "Next": "Done"},
        "Done": {"Type": "Pass", "Parameters": {"n.$": "$.n", "sums.$": "$.sums"},
                 "End": True}}}
    try:
        sfn = server.client("stepfunctions")
        arn = machine(sfn, definition)
        # Two thirds wait 3-4 s, the rest not at all: starting all 100 takes well under
        # 3 s even on a loaded machine (it took over 2 s at load 7 with 1-2 s waits).
        started = {n: sfn.start_execution(
            stateMachineArn=arn, name=f"e{n}",
            input=json.dumps({"n": n % 3, "wait": 2 + n % 3 if n % 3 else 0}))["executionArn"]
            for n in range(100)}
        # In flight: the ones still waiting have not finished when the server dies.
        running = [a for a in started.values()
                   if sfn.describe_execution(executionArn=a)["status"] == "RUNNING"]
        assert len(running) >= 30, len(running)
        server = _restart(server, tmp_path / "data")
        sfn = server.client("stepfunctions")
        for n, execution in started.items():
            done = wait_done(sfn, execution, 30)
            assert done["status"] == "SUCCEEDED", (n, done)
            m = n % 3
            assert json.loads(done["output"]) == {"n": m, "sums": [1 + m, 2 + m, 3 + m, 4 + m]}
            types = [e["type"] for e in _history(sfn, execution)]
            assert types.count("ExecutionStarted") == 1 and types.count("ExecutionSucceeded") == 1
            assert types[-1] == "ExecutionSucceeded"
        listed = sfn.list_executions(stateMachineArn=arn, maxResults=1000)["executions"]
        assert sorted(e["name"] for e in listed) == sorted(f"e{n}" for n in range(100))
        assert {e["status"] for e in listed} == {"SUCCEEDED"}
    finally:
        server.stop()
    assert " -> 500 " not in server.log()
