"""State machine versions and aliases through boto3."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sfn_helpers import ROLE, unique, wait_done


def result(value: str) -> str:
    return json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": value,
                                                        "End": True}}})


def run(sfn: Any, arn: str) -> dict[str, Any]:
    return wait_done(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])


def test_versions_publish_describe_and_run(sfn: Any) -> None:
    created = sfn.create_state_machine(name=unique("ver"), definition=result("one"),
                                       roleArn=ROLE, publish=True, versionDescription="v1")
    arn, v1 = created["stateMachineArn"], created["stateMachineVersionArn"]
    assert v1 == arn + ":1"
    assert sfn.publish_state_machine_version(stateMachineArn=arn)[
        "stateMachineVersionArn"] == v1  # nothing changed: the same version
    updated = sfn.update_state_machine(stateMachineArn=arn, definition=result("two"),
                                       publish=True, versionDescription="v2")
    v2 = updated["stateMachineVersionArn"]
    assert v2 == arn + ":2"
    described = sfn.describe_state_machine(stateMachineArn=v1)
    assert (described["stateMachineArn"], described["description"]) == (v1, "v1")
    assert json.loads(described["definition"])["States"]["P"]["Result"] == "one"
    listed = sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]
    assert [v["stateMachineVersionArn"] for v in listed] == [v2, v1]
    done = run(sfn, v1)
    assert json.loads(done["output"]) == "one" and done["stateMachineVersionArn"] == v1
    assert json.loads(run(sfn, arn)["output"]) == "two"
    with pytest.raises(ClientError) as exc:
        sfn.publish_state_machine_version(stateMachineArn=arn, revisionId="stale")
    assert exc.value.response["Error"]["Code"] == "ConflictException"
    sfn.delete_state_machine_version(stateMachineVersionArn=v1)
    with pytest.raises(ClientError) as exc:
        sfn.describe_state_machine(stateMachineArn=v1)
    assert exc.value.response["Error"]["Code"] == "StateMachineDoesNotExist"


def test_aliases_route_by_weight(sfn: Any) -> None:
    created = sfn.create_state_machine(name=unique("alias"), definition=result("one"),
                                       roleArn=ROLE, publish=True)
    arn, v1 = created["stateMachineArn"], created["stateMachineVersionArn"]
    v2 = sfn.update_state_machine(stateMachineArn=arn, definition=result("two"),
                                  publish=True)["stateMachineVersionArn"]
    alias = sfn.create_state_machine_alias(
        name="prod", routingConfiguration=[{"stateMachineVersionArn": v1, "weight": 100}],
        description="live")["stateMachineAliasArn"]
    assert alias == arn + ":prod"
    described = sfn.describe_state_machine_alias(stateMachineAliasArn=alias)
    assert described["routingConfiguration"] == [{"stateMachineVersionArn": v1,
                                                  "weight": 100}]
    done = run(sfn, alias)
    assert json.loads(done["output"]) == "one"
    assert (done["stateMachineAliasArn"], done["stateMachineVersionArn"]) == (alias, v1)
    sfn.update_state_machine_alias(stateMachineAliasArn=alias, routingConfiguration=[
        {"stateMachineVersionArn": v1, "weight": 0},
        {"stateMachineVersionArn": v2, "weight": 100}])
    assert json.loads(run(sfn, alias)["output"]) == "two"
    with pytest.raises(ClientError) as exc:
        sfn.create_state_machine_alias(name="bad", routingConfiguration=[
            {"stateMachineVersionArn": v1, "weight": 50}])
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as exc:
        sfn.delete_state_machine_version(stateMachineVersionArn=v2)
    assert exc.value.response["Error"]["Code"] == "ConflictException"
    listed = sfn.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]
    assert [a["stateMachineAliasArn"] for a in listed] == [alias]
    sfn.delete_state_machine_alias(stateMachineAliasArn=alias)
    with pytest.raises(ClientError) as exc:
        sfn.describe_state_machine_alias(stateMachineAliasArn=alias)
    assert exc.value.response["Error"]["Code"] == "ResourceNotFound"


def test_redrive_execution_resumes_at_the_failed_state(sfn: Any, s3: Any,
                                                        bucket: str) -> None:
    arn = sfn.create_state_machine(name=unique("redrive"), roleArn=ROLE, definition=json.dumps(
        {"StartAt": "First", "States": {
            "First": {"Type": "Pass", "Result": "ran", "ResultPath": "$.first",
                      "Next": "Read"},
            "Read": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                     "Parameters": {"Bucket": bucket, "Key": "late"},
                     "ResultSelector": {"Body.$": "$.Body"}, "ResultPath": "$.read",
                     "End": True}}}))["stateMachineArn"]
    done = run(sfn, arn)
    assert (done["status"], done["error"]) == ("FAILED", "S3.NoSuchKeyException")
    assert done["redriveStatus"] == "REDRIVABLE" and done["redriveCount"] == 0
    s3.put_object(Bucket=bucket, Key="late", Body=b"now here")
    redriven = sfn.redrive_execution(executionArn=done["executionArn"])
    assert redriven["redriveDate"]
    again = wait_done(sfn, done["executionArn"])
    assert again["status"] == "SUCCEEDED", again
    assert json.loads(again["output"]) == {"first": "ran", "read": {"Body": "now here"}}
    assert again["redriveCount"] == 1 and again["redriveStatus"] == "NOT_REDRIVABLE"
    types = [e["type"] for e in sfn.get_execution_history(
        executionArn=done["executionArn"])["events"]]
    assert types.count("PassStateEntered") == 1  # First did not run again
    after = types[types.index("ExecutionRedriven"):]
    assert after[:2] == ["ExecutionRedriven", "TaskStateEntered"]
    with pytest.raises(ClientError) as exc:
        sfn.redrive_execution(executionArn=done["executionArn"])
    assert exc.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
