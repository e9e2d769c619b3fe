"""Redriving a parent whose distributed Map failed redrives its Map Run: same ARN, only
the children that did not succeed run again, redriveCount and redriveDate on the run."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sfn_helpers import dmap, machine, wait_done

SDK = "arn:aws:states:::aws-sdk:s3:"
# Every child logs a run to ran/<n>/, then item 2 needs the object `gate` to exist.
GATED = {
    "Log": {"Type": "Task", "Resource": SDK + "putObject", "Parameters": {
        "Bucket.$": "$.b", "Key.$": "States.Format('ran/{}/{}', $.n, States.UUID())",
        "Body": "x"}, "ResultPath": None, "Next": "C"},
    "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 2,
                                         "Next": "Gate"}], "Default": "Done"},
    "Gate": {"Type": "Task", "Resource": SDK + "headObject",
             "Parameters": {"Bucket.$": "$.b", "Key": "gate"}, "ResultPath": None,
             "Next": "Done"},
    "Done": {"Type": "Pass", "OutputPath": "$.n", "End": True}}
MAP_RUN = re.compile(r"^arn:aws:states:us-east-1:000000000000:mapRun:sm-[^/:]+/gated:"
                     r"[0-9a-f-]{36}$")


def runs_of(s3: Any, bucket: str, n: int) -> int:
    return int(s3.list_objects_v2(Bucket=bucket, Prefix=f"ran/{n}/")["KeyCount"])


def events(sfn: Any, arn: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sfn.get_execution_history(executionArn=arn,
                                                            maxResults=1000)["events"]
    return found


@pytest.mark.parametrize("kind", ["STANDARD", "EXPRESS"])
def test_redrive_reruns_only_the_unsuccessful_children(sfn: Any, s3: Any, bucket: str,
                                                       kind: str) -> None:
    arn = machine(sfn, dmap(GATED, "Log", kind, ItemsPath="$.items", MaxConcurrency=1,
                            Label="gated"))
    items = {"items": [{"n": n, "b": bucket} for n in range(5)]}
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(items))[
        "executionArn"]
    failed = wait_done(sfn, execution, 30)
    assert (failed["status"], failed["error"]) == ("FAILED",
                                                   "States.ExceedToleratedFailureThreshold")
    [listed] = sfn.list_map_runs(executionArn=execution)["mapRuns"]
    map_run = listed["mapRunArn"]
    assert MAP_RUN.match(map_run), map_run
    before = sfn.describe_map_run(mapRunArn=map_run)
    assert before["status"] == "FAILED" and before["redriveCount"] == 0
    assert "redriveDate" not in before
    assert before["executionCounts"]["succeeded"] == 2
    assert before["executionCounts"]["failed"] == 1
    assert before["executionCounts"]["pending"] == 2
    if kind == "STANDARD":
        children = {c["name"]: c for c in sfn.list_executions(mapRunArn=map_run)[
            "executions"]}
        assert sorted(c["status"] for c in children.values()) == [
            "FAILED", "SUCCEEDED", "SUCCEEDED"]
        bad = next(c for c in children.values() if c["status"] == "FAILED")
        assert sfn.describe_execution(executionArn=bad["executionArn"])[
            "redriveStatus"] == "REDRIVABLE_BY_MAP_RUN"

    s3.put_object(Bucket=bucket, Key="gate", Body=b"open")
    sfn.redrive_execution(executionArn=execution)
    done = wait_done(sfn, execution, 30)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert json.loads(done["output"]) == [0, 1, 2, 3, 4]
    assert done["redriveCount"] == 1

    [again] = sfn.list_map_runs(executionArn=execution)["mapRuns"]
    assert again["mapRunArn"] == map_run
    after = sfn.describe_map_run(mapRunArn=map_run)
    assert after["status"] == "SUCCEEDED" and after["redriveCount"] == 1
    assert after["redriveDate"] >= before["stopDate"]
    assert after["executionCounts"]["succeeded"] == 5
    assert after["executionCounts"]["pendingRedrive"] == 0
    assert after["itemCounts"]["succeeded"] == 5

    history = events(sfn, execution)
    redriven = [e for e in history if e["type"] == "MapRunRedriven"]
    assert [e["mapRunRedrivenEventDetails"] for e in redriven] == [
        {"mapRunArn": map_run, "redriveCount": 1}]
    types = [e["type"] for e in history]
    at = types.index("ExecutionRedriven")
    assert types[at:] == ["ExecutionRedriven", "MapStateEntered", "MapStateStarted",
                          "MapRunRedriven", "MapRunSucceeded", "MapStateSucceeded",
                          "MapStateExited", "ExecutionSucceeded"]

    # The two that had succeeded did not run again; the one never started ran once.
    assert [runs_of(s3, bucket, n) for n in (0, 1, 3, 4)] == [1, 1, 1, 1]
    if kind == "STANDARD":
        # The failed child was redriven from its failed state: Log did not run again.
        assert runs_of(s3, bucket, 2) == 1
        found = sfn.describe_execution(executionArn=bad["executionArn"])
        assert (found["status"], found["redriveCount"]) == ("SUCCEEDED", 1)
        assert "ExecutionRedriven" in [e["type"] for e in events(sfn, bad["executionArn"])]
        kept = next(c for c in children.values() if c["status"] == "SUCCEEDED")
        assert sfn.describe_execution(executionArn=kept["executionArn"])[
            "redriveCount"] == 0
        assert len(sfn.list_executions(mapRunArn=map_run)["executions"]) == 5
    else:
        assert runs_of(s3, bucket, 2) == 2  # an EXPRESS child starts over
