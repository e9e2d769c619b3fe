"""StartSyncExecution, ValidateStateMachineDefinition and TestState through boto3."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import Server
from sfn_helpers import machine


@pytest.fixture
def sfn(server: Server) -> Any:
    # botocore puts StartSyncExecution and TestState on a `sync-` host; kobako routes
    # by X-Amz-Target, but 127.0.0.1 has no `sync-` name to resolve.
    return server.client("stepfunctions", config=Config(inject_host_prefix=False,
                                                        retries={"max_attempts": 1}))


def test_start_sync_execution(sfn: Any) -> None:
    arn = machine(sfn, {"StartAt": "P", "States": {"P": {
        "Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, $.b)"}, "End": True}}},
        type="EXPRESS")
    done = sfn.start_sync_execution(stateMachineArn=arn, name="sync1", input='{"a":1,"b":2}')
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"sum": 3}
    assert done["executionArn"].startswith(arn.replace(":stateMachine:", ":express:")
                                           + ":sync1:")
    assert done["billingDetails"]["billedDurationInMilliseconds"] >= 100
    failing = machine(sfn, {"StartAt": "F", "States": {"F": {
        "Type": "Fail", "Error": "Nope", "Cause": "because"}}}, type="EXPRESS")
    done = sfn.start_sync_execution(stateMachineArn=failing)
    assert (done["status"], done["error"], done["cause"]) == ("FAILED", "Nope", "because")
    standard = machine(sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    with pytest.raises(ClientError) as exc:
        sfn.start_sync_execution(stateMachineArn=standard)
    assert exc.value.response["Error"]["Code"] == "StateMachineTypeNotSupported"


def test_validate_state_machine_definition(sfn: Any) -> None:
    ok = sfn.validate_state_machine_definition(definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))
    assert (ok["result"], ok["diagnostics"]) == ("OK", [])
    bad = sfn.validate_state_machine_definition(definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "Gone"}}}))
    assert bad["result"] == "FAIL"
    assert bad["diagnostics"] == [{"severity": "ERROR", "code": "MISSING_TRANSITION_TARGET",
                                   "message": "Missing 'Next' target: Gone",
                                   "location": "/States/P/Next"}]
    broken = sfn.validate_state_machine_definition(definition="{")
    assert broken["diagnostics"][0]["code"] == "INVALID_JSON_DESCRIPTION"


def test_test_state(sfn: Any) -> None:
    passed = sfn.test_state(definition=json.dumps({
        "Type": "Pass", "Parameters": {"x.$": "$.a"}, "ResultPath": "$.r", "Next": "N"}),
        roleArn="arn:aws:iam::000000000000:role/r", input='{"a": 1}',
        inspectionLevel="DEBUG")
    assert passed["status"] == "SUCCEEDED" and passed["nextState"] == "N"
    assert json.loads(passed["output"]) == {"a": 1, "r": {"x": 1}}
    assert json.loads(passed["inspectionData"]["input"]) == {"a": 1}
    task = {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
            "Parameters": {"Bucket": "no-such-bucket-kobako", "Key": "k"}, "End": True}
    failed = sfn.test_state(definition=json.dumps(task),
                            roleArn="arn:aws:iam::000000000000:role/r")
    assert (failed["status"], failed["error"]) == ("FAILED", "S3.NoSuchBucketException")
    retried = sfn.test_state(definition=json.dumps({**task, "Retry": [
        {"ErrorEquals": ["States.ALL"]}]}), roleArn="arn:aws:iam::000000000000:role/r")
    assert retried["status"] == "RETRIABLE"
    caught = sfn.test_state(definition=json.dumps({**task, "Catch": [
        {"ErrorEquals": ["States.ALL"], "Next": "H", "ResultPath": "$.e"}]}),
        roleArn="arn:aws:iam::000000000000:role/r", input='{"k": 1}')
    assert (caught["status"], caught["nextState"]) == ("CAUGHT_ERROR", "H")
    assert json.loads(caught["output"])["e"]["Error"] == "S3.NoSuchBucketException"
    jsonata = sfn.test_state(definition=json.dumps({
        "Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $v + 1 %}",
        "End": True}), roleArn="arn:aws:iam::000000000000:role/r", variables='{"v": 41}')
    assert json.loads(jsonata["output"]) == 42
