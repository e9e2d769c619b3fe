"""Step Functions Tasks that call kobako's own Batch and S3 in-process."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from batch_helpers import Env, make_env
from conftest import Server
from sfn_helpers import run, task

SUBMIT = "arn:aws:states:::batch:submitJob"


@pytest.fixture
def env(server: Server) -> Env:
    return make_env(server.client("batch"))


def test_batch_submit_job_sync_succeeds(sfn: Any, env: Env) -> None:
    definition = env.definition(["echo", "Ref::word"])
    done = run(sfn, task(SUBMIT + ".sync", {
        "JobName": "from-sfn", "JobQueue": env.queue, "JobDefinition": definition,
        "Parameters": {"word.$": "$.word"},
        "ContainerOverrides": {"Environment": [{"Name": "K", "Value": "v"}]}}),
        {"word": "hi"}, 30)
    assert done["status"] == "SUCCEEDED", done
    job = json.loads(done["output"])
    assert job["Status"] == "SUCCEEDED" and job["JobName"] == "from-sfn"
    assert job["Parameters"] == {"word": "hi"}  # map keys are not re-cased
    assert job["Container"]["Command"] == ["echo", "hi"]
    assert job["Container"]["ExitCode"] == 0
    assert {"Name": "K", "Value": "v"} in job["Container"]["Environment"]
    assert job["JobId"] and job["Attempts"]
    described = env.describe(job["JobId"])
    assert described["status"] == "SUCCEEDED"


def test_batch_submit_job_returns_at_once(sfn: Any, env: Env) -> None:
    definition = env.definition(["sleep", "0.2"])
    done = run(sfn, task(SUBMIT, {"JobName": "fire", "JobQueue": env.queue,
                                  "JobDefinition": definition}))
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    assert set(out) == {"JobArn", "JobId", "JobName"} and out["JobName"] == "fire"
    assert env.wait(out["JobId"])["status"] == "SUCCEEDED"


def test_batch_failed_job_fails_the_state(sfn: Any, env: Env) -> None:
    definition = env.definition(["sh", "-c", "exit 3"])
    done = run(sfn, task(SUBMIT + ".sync", {"JobName": "bad", "JobQueue": env.queue,
                                            "JobDefinition": definition}), None, 30)
    assert (done["status"], done["error"]) == ("FAILED", "States.TaskFailed")
    cause = json.loads(done["cause"])
    assert cause["Status"] == "FAILED" and cause["Container"]["ExitCode"] == 3
    state = task(SUBMIT + ".sync", {"JobName": "bad", "JobQueue": env.queue,
                                    "JobDefinition": definition})["States"]["T"]
    del state["End"]
    caught = run(sfn, {"StartAt": "T", "States": {
        "T": {**state, "Next": "Ok",
              "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Ok"}]},
        "Ok": {"Type": "Pass", "End": True}}}, None, 30)
    assert caught["status"] == "SUCCEEDED", caught
    assert json.loads(caught["output"])["Error"] == "States.TaskFailed"


def test_batch_submit_errors_are_named(sfn: Any, env: Env) -> None:
    done = run(sfn, task(SUBMIT, {"JobName": "x", "JobQueue": env.queue,
                                  "JobDefinition": "no-such-def"}))
    assert (done["status"], done["error"]) == ("FAILED", "Batch.ClientException")
    assert "no-such-def" in done["cause"]
    # The optimized integration's Java SDK wording.
    assert re.search(r" \(Service: AWSBatch; Status Code: 400; Error Code: ClientException; "
                     r"Request ID: [0-9a-f-]{36}; Proxy: null\)$", done["cause"]), done["cause"]


def test_s3_sdk_put_get_list_delete(sfn: Any, bucket: str, s3: Any) -> None:
    sdk = "arn:aws:states:::aws-sdk:s3:"
    definition = {"StartAt": "Put", "States": {
        "Put": {"Type": "Task", "Resource": sdk + "putObject",
                "Parameters": {"Bucket": bucket, "Key": "a/doc.json", "Body.$": "$.doc",
                               "ContentType": "application/json"},
                "ResultPath": "$.put", "Next": "Get"},
        "Get": {"Type": "Task", "Resource": sdk + "getObject",
                "Parameters": {"Bucket": bucket, "Key": "a/doc.json"},
                "ResultSelector": {"Body.$": "$.Body", "Type.$": "$.ContentType",
                                   "Length.$": "$.ContentLength"},
                "ResultPath": "$.get", "Next": "List"},
        "List": {"Type": "Task", "Resource": sdk + "listObjectsV2",
                 "Parameters": {"Bucket": bucket, "Prefix": "a/"},
                 "ResultPath": "$.list", "Next": "Delete"},
        "Delete": {"Type": "Task", "Resource": sdk + "deleteObject",
                   "Parameters": {"Bucket": bucket, "Key": "a/doc.json"},
                   "ResultPath": None, "End": True}}}
    done = run(sfn, definition, {"doc": {"n": 1}})
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    assert out["put"]["ETag"].startswith('"')
    assert out["get"] == {"Body": '{"n":1}', "Type": "application/json", "Length": 7}
    listed = out["list"]
    assert listed["KeyCount"] == 1 and listed["Contents"][0]["Key"] == "a/doc.json"
    assert listed["Contents"][0]["LastModified"].endswith("Z")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_s3_sdk_errors_use_aws_names(sfn: Any, bucket: str) -> None:
    sdk = "arn:aws:states:::aws-sdk:s3:"
    done = run(sfn, task(sdk + "getObject", {"Bucket": bucket, "Key": "missing"}))
    assert (done["status"], done["error"]) == ("FAILED", "S3.NoSuchKeyException")
    assert "The specified key does not exist." in done["cause"]
    caught = run(sfn, {"StartAt": "G", "States": {
        "G": {"Type": "Task", "Resource": sdk + "headBucket",
              "Parameters": {"Bucket": "no-such-bucket-kobako"},
              "Catch": [{"ErrorEquals": ["S3.NoSuchBucketException"], "Next": "C"}],
              "End": True},
        "C": {"Type": "Pass", "End": True}}})
    assert caught["status"] == "SUCCEEDED", caught
    assert json.loads(caught["output"])["Error"] == "S3.NoSuchBucketException"


def test_unserved_sdk_service_fails_fast(sfn: Any) -> None:
    done = run(sfn, task("arn:aws:states:::aws-sdk:dynamodb:getItem",
                         {"TableName": "t"}), None, 5)
    assert (done["status"], done["error"]) == ("FAILED", "States.Runtime")
    assert "aws-sdk:dynamodb:getItem" in done["cause"]


def test_sdk_reaches_other_served_services(sfn: Any) -> None:
    done = run(sfn, task("arn:aws:states:::aws-sdk:sfn:listStateMachines",
                         {"MaxResults": 1}))
    assert done["status"] == "SUCCEEDED", done
    listed = json.loads(done["output"])
    assert len(listed["StateMachines"]) == 1
    assert listed["StateMachines"][0]["StateMachineArn"].startswith("arn:aws:states:")
    done = run(sfn, task("arn:aws:states:::aws-sdk:sfn:describeExecution",
                         {"ExecutionArn": "arn:aws:states:us-east-1:000000000000:"
                                          "execution:nope:nope"}))
    assert (done["status"], done["error"]) == ("FAILED", "Sfn.ExecutionDoesNotExistException")
