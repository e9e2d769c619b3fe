"""Step Functions Tasks that run kobako's own SageMaker training jobs in-process."""

from __future__ import annotations

import json
import time
from typing import Any

from conftest import Server
from sagemaker_helpers import job_request, stage, unique
from sfn_helpers import run, task

TRAIN = "arn:aws:states:::sagemaker:createTrainingJob"


def test_create_training_job_sync_returns_the_description(sfn: Any, s3: Any,
                                                          bucket: str) -> None:
    source = stage(s3, bucket)
    name = unique("sfn-train")
    params = job_request(bucket, name, source)
    params["TrainingJobName.$"] = "$.name"
    del params["TrainingJobName"]
    done = run(sfn, task(TRAIN + ".sync", params), {"name": name}, 60)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    job = json.loads(done["output"])
    assert job["TrainingJobName"] == name and job["TrainingJobStatus"] == "Completed"
    assert job["ModelArtifacts"]["S3ModelArtifacts"].endswith("model.tar.gz")
    assert job["HyperParameters"]["epochs"] == "3"  # map keys are not re-cased
    assert isinstance(job["CreationTime"], int) and job["CreationTime"] > 1_600_000_000_000
    assert s3.head_object(Bucket=bucket, Key=f"output/{name}/output/model.tar.gz")


def test_training_failure_and_plain_create(sfn: Any, s3: Any, bucket: str) -> None:
    source = stage(s3, bucket)
    failing = unique("sfn-fail")
    done = run(sfn, task(TRAIN + ".sync", job_request(bucket, failing, source, mode="fail")),
               None, 60)
    assert (done["status"], done["error"]) == ("FAILED", "States.TaskFailed")
    cause = json.loads(done["cause"])
    assert cause["TrainingJobStatus"] == "Failed"
    assert cause["FailureReason"] == "AlgorithmError: boom: the data is bad"

    plain = unique("sfn-plain")
    done = run(sfn, task(TRAIN, job_request(bucket, plain, source)), None, 30)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert json.loads(done["output"])["TrainingJobArn"].endswith(f"training-job/{plain}")
    again = run(sfn, task(TRAIN, job_request(bucket, plain, source)), None, 30)
    assert (again["status"], again["error"]) == ("FAILED", "SageMaker.ResourceInUseException")


def test_sync_timeout_stops_the_training_job(sfn: Any, server: Server, s3: Any,
                                             bucket: str) -> None:
    source = stage(s3, bucket)
    name = unique("sfn-slow")
    done = run(sfn, task(TRAIN + ".sync", job_request(bucket, name, source, mode="sleep"),
                         TimeoutSeconds=3), None, 30)
    assert (done["status"], done["error"]) == ("FAILED", "States.Timeout")
    sagemaker = server.client("sagemaker")
    end = time.monotonic() + 15
    while (status := sagemaker.describe_training_job(TrainingJobName=name)[
            "TrainingJobStatus"]) not in ("Stopped", "Completed", "Failed"):
        assert time.monotonic() < end, status
        time.sleep(0.1)
    assert status == "Stopped"
