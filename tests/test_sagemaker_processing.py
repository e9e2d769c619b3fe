"""SageMaker processing jobs against a real kobako server: inputs, command, outputs."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server
from sagemaker_helpers import ROLE, unique, wait_ended

PREPROCESS_PY = '''
import os, sys
src = [a for a in sys.argv if a.startswith("--in=")][0][5:]
out = sys.argv[sys.argv.index("--out") + 1]
total = 0
for name in sorted(os.listdir(src)):
    total += sum(int(x) for x in open(os.path.join(src, name)).read().split())
os.makedirs(os.path.join(out, "nested"), exist_ok=True)
with open(os.path.join(out, "nested", "total.txt"), "w") as f:
    f.write(f"{total} {os.environ['GREETING']}")
print(f"total={total}")
'''


def _wait(sm: Any, name: str) -> dict[str, Any]:
    return wait_ended(lambda: sm.describe_processing_job(ProcessingJobName=name),
                      "ProcessingJobStatus", f"processing job {name}")


def _request(bucket: str, name: str, entry: list[str], args: list[str] | None = None,
             **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "ProcessingJobName": name, "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": "kobako/python", "ContainerEntrypoint": entry,
                             **({"ContainerArguments": args} if args else {})},
        "ProcessingInputs": [
            {"InputName": "data", "S3Input": {
                "S3Uri": f"s3://{bucket}/raw", "LocalPath": "/opt/ml/processing/input/data",
                "S3DataType": "S3Prefix", "S3InputMode": "File"}},
            {"InputName": "code", "S3Input": {
                "S3Uri": f"s3://{bucket}/code/preprocess.py",
                "LocalPath": "/opt/ml/processing/input/code", "S3DataType": "S3Prefix",
                "S3InputMode": "File"}}],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "result", "S3Output": {
            "S3Uri": f"s3://{bucket}/processed/{name}",
            "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1,
                                                  "InstanceType": "ml.t3.medium",
                                                  "VolumeSizeInGB": 5}},
        "Environment": {"GREETING": "hi"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }
    request.update(extra)
    return request


def test_processing_job_reads_inputs_runs_and_uploads(server: Server, s3: Any,
                                                      bucket: str) -> None:
    sm = server.client("sagemaker")
    s3.put_object(Bucket=bucket, Key="raw/a.txt", Body=b"1 2 3")
    s3.put_object(Bucket=bucket, Key="raw/b.txt", Body=b"4")
    s3.put_object(Bucket=bucket, Key="code/preprocess.py", Body=PREPROCESS_PY.encode())
    name = unique("proc")
    arn = sm.create_processing_job(**_request(
        bucket, name, ["python3", "/opt/ml/processing/input/code/preprocess.py"],
        ["--in=/opt/ml/processing/input/data", "--out", "/opt/ml/processing/output"])
    )["ProcessingJobArn"]
    assert arn.endswith(f":processing-job/{name}")
    job = _wait(sm, name)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ProcessingEndTime"] >= job["ProcessingStartTime"]
    assert job["Environment"] == {"GREETING": "hi"}
    body = s3.get_object(Bucket=bucket, Key=f"processed/{name}/nested/total.txt")["Body"]
    assert body.read() == b"10 hi"
    logs = server.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/ProcessingJobs",
                                        logStreamNamePrefix=f"{name}/algo-1-")["logStreams"]
    events = logs.get_log_events(logGroupName="/aws/sagemaker/ProcessingJobs",
                                 logStreamName=streams[0]["logStreamName"])["events"]
    assert [e["message"] for e in events] == ["total=10"]
    listed = sm.list_processing_jobs(NameContains=name)["ProcessingJobSummaries"]
    assert [(j["ProcessingJobName"], j["ProcessingJobStatus"]) for j in listed] == [
        (name, "Completed")]


def test_processing_failure_exit_message_stop_and_errors(server: Server, s3: Any,
                                                         bucket: str) -> None:
    sm = server.client("sagemaker")
    s3.put_object(Bucket=bucket, Key="raw/a.txt", Body=b"1")
    s3.put_object(Bucket=bucket, Key="code/preprocess.py", Body=b"")
    failing = unique("procfail")
    sm.create_processing_job(**_request(bucket, failing, ["/bin/sh", "-c",
        "echo 'bad input' > /opt/ml/output/message; exit 4"]))
    job = _wait(sm, failing)
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("AlgorithmError:")
    assert job["ExitMessage"] == "bad input\n"
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"processed/{failing}")["KeyCount"] == 0

    slow = unique("procstop")
    sm.create_processing_job(**_request(bucket, slow, ["sleep", "60"]))
    time.sleep(0.5)
    sm.stop_processing_job(ProcessingJobName=slow)
    job = _wait(sm, slow)
    assert job["ProcessingJobStatus"] == "Stopped"
    with pytest.raises(ClientError) as error:
        sm.stop_processing_job(ProcessingJobName=slow)
    assert error.value.response["Error"]["Code"] == "ValidationException"

    timed = unique("proctime")
    sm.create_processing_job(**_request(bucket, timed, ["sleep", "60"],
                                        StoppingCondition={"MaxRuntimeInSeconds": 1}))
    assert _wait(sm, timed)["ProcessingJobStatus"] == "Stopped"

    with pytest.raises(ClientError) as error:
        sm.create_processing_job(**_request(bucket, failing, ["true"]))
    assert error.value.response["Error"]["Code"] == "ResourceInUse"
    with pytest.raises(ClientError) as error:
        sm.describe_processing_job(ProcessingJobName="no-such-processing-job")
    assert error.value.response["Error"]["Code"] == "ResourceNotFound"
    missing = unique("procmiss")
    request = _request(bucket, missing, ["true"])
    request["ProcessingInputs"][0]["S3Input"]["S3Uri"] = "s3://no-such-bucket-kobako/x"
    sm.create_processing_job(**request)
    job = _wait(sm, missing)
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: Input data:")
