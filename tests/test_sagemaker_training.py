"""SageMaker training jobs against a real kobako server, driven by boto3."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server
from sagemaker_helpers import job_request, members, stage, unique, wait_job


@pytest.fixture
def sm(server: Server) -> Any:
    return server.client("sagemaker")


def test_script_mode_job_runs_the_training_contract(sm: Any, s3: Any, bucket: str,
                                                    server: Server) -> None:
    source = stage(s3, bucket)
    name = unique("train")
    arn = sm.create_training_job(**job_request(bucket, name, source))["TrainingJobArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:000000000000:training-job/{name}"
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["SecondaryStatus"] == "Completed"
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert job["TrainingEndTime"] >= job["TrainingStartTime"]
    assert job["TrainingTimeInSeconds"] >= 1 and job["BillableTimeInSeconds"] >= 1
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert metrics == {"train:loss": pytest.approx(1 / 3, abs=1e-3)}

    artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == f"s3://{bucket}/output/{name}/output/model.tar.gz"
    files = members(s3.get_object(Bucket=bucket, Key=f"output/{name}/output/model.tar.gz")
                    ["Body"].read())
    assert "code/inference.py" in files
    model = json.loads(files["model.json"])
    assert model["argv"] == ["--epochs", "3", "--lr", "0.1", "--mode", "ok"]
    assert model["hps"] == {"epochs": 3, "lr": 0.1, "mode": "ok"}
    assert model["files"] == ["data.csv", "sub"]
    assert model["mean"] == 3.0
    assert model["env"]["SM_NUM_CPUS"] == "2" or int(model["env"]["SM_NUM_CPUS"]) >= 1
    assert json.loads(model["env"]["SM_HOSTS"]) == ["algo-1"]
    assert json.loads(model["env"]["SM_CHANNELS"]) == ["train"]
    assert model["env"]["SM_CURRENT_HOST"] == "algo-1"
    assert model["config"] == ["hyperparameters.json", "inputdataconfig.json",
                               "resourceconfig.json"]
    assert model["training_env"] == name
    output = members(s3.get_object(Bucket=bucket, Key=f"output/{name}/output/output.tar.gz")
                     ["Body"].read())
    assert output == {"report.txt": b"done"}

    logs = server.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix=f"{name}/algo-1-")["logStreams"]
    assert len(streams) == 1
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                 logStreamName=streams[0]["logStreamName"])["events"]
    assert any("train_loss=0.3333" in e["message"] for e in events)


def test_failing_script_sets_failure_reason_from_output_failure(sm: Any, s3: Any,
                                                                bucket: str) -> None:
    source = stage(s3, bucket)
    name = unique("fail")
    sm.create_training_job(**job_request(bucket, name, source, mode="fail"))
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["SecondaryStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: boom: the data is bad"
    assert "ModelArtifacts" not in job or not job["ModelArtifacts"].get("S3ModelArtifacts")


def test_max_runtime_stops_a_sleeping_job(sm: Any, s3: Any, bucket: str) -> None:
    source = stage(s3, bucket)
    name = unique("slow")
    sm.create_training_job(**job_request(bucket, name, source, mode="sleep",
                                         StoppingCondition={"MaxRuntimeInSeconds": 2}))
    started = time.monotonic()
    job = wait_job(sm, name)
    assert time.monotonic() - started < 30
    assert job["TrainingJobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert job["ModelArtifacts"]["S3ModelArtifacts"].endswith(f"/{name}/output/model.tar.gz")


def test_stop_training_job(sm: Any, s3: Any, bucket: str) -> None:
    source = stage(s3, bucket)
    name = unique("stop")
    sm.create_training_job(**job_request(bucket, name, source, mode="sleep"))
    deadline = time.monotonic() + 30
    while sm.describe_training_job(TrainingJobName=name)["SecondaryStatus"] != "Training":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    sm.stop_training_job(TrainingJobName=name)
    job = wait_job(sm, name)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    with pytest.raises(ClientError) as error:
        sm.stop_training_job(TrainingJobName=name)
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_algorithm_mode_runs_the_entrypoint_and_missing_data_fails(sm: Any, s3: Any,
                                                                   bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="in/a.txt", Body=b"hello")
    name = unique("algo")
    script = ('cat input/config/hyperparameters.json > model/hps.json && '
              'cp input/data/train/a.txt model/ && echo "accuracy: 0.91"')
    request = job_request(bucket, name, "unused", HyperParameters={"alpha": "1"},
                          AlgorithmSpecification={
                              "TrainingImage": "my/algo", "TrainingInputMode": "File",
                              "ContainerEntrypoint": ["/bin/sh", "-c", script],
                              "MetricDefinitions": [{"Name": "acc",
                                                     "Regex": r"accuracy: ([0-9.]+)"}]})
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{bucket}/in"
    sm.create_training_job(**request)
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["FinalMetricDataList"][0]["Value"] == pytest.approx(0.91)
    files = members(s3.get_object(Bucket=bucket, Key=f"output/{name}/output/model.tar.gz")
                    ["Body"].read())
    assert json.loads(files["hps.json"]) == {"alpha": "1"}
    assert files["a.txt"] == b"hello"

    missing = unique("nodata")
    request = job_request(bucket, missing, "unused")
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = \
        "s3://no-such-bucket-kobako/x"
    sm.create_training_job(**request)
    job = wait_job(sm, missing)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: Data download failed")


OPT_ML_SCRIPT = """set -e
cfg=/opt/ml/input/config
host=$(python3 -c "import json; print(json.load(open('$cfg/resourceconfig.json'))['current_host'])")
cp $cfg/hyperparameters.json "/opt/ml/model/hps-$host.json"
echo "$AWS_REGION" > /opt/ml/model/region
command -v python3 > /opt/ml/model/python
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="binding /opt/ml needs root (CAP_SYS_ADMIN)")
def test_process_jobs_see_their_job_directory_at_opt_ml(sm: Any, s3: Any, bucket: str) -> None:
    """A script that hard-codes /opt/ml in its own text (not in its arguments, which
    kobako rewrites anyway) reads and writes the job's directory; each host of a
    two-host job sees its own input/config; `python3` is kobako's interpreter."""
    s3.put_object(Bucket=bucket, Key="optml/run.sh", Body=OPT_ML_SCRIPT.encode())
    name = unique("optml")
    request = job_request(bucket, name, "unused", HyperParameters={"alpha": "1"},
                          AlgorithmSpecification={
                              "TrainingImage": "my/algo", "TrainingInputMode": "File",
                              "ContainerEntrypoint": ["/bin/sh"],
                              "ContainerArguments": ["/opt/ml/input/data/train/run.sh"]})
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = \
        f"s3://{bucket}/optml"
    request["ResourceConfig"]["InstanceCount"] = 2
    sm.create_training_job(**request)
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    files = members(s3.get_object(Bucket=bucket, Key=f"output/{name}/output/model.tar.gz")
                    ["Body"].read())
    assert json.loads(files["hps-algo-1.json"]) == {"alpha": "1"}
    assert json.loads(files["hps-algo-2.json"]) == {"alpha": "1"}
    assert files["region"] == b"us-east-1\n"
    assert Path(files["python"].decode().strip()).parent == Path(sys.executable).parent
    assert not Path("/opt/ml/model/region").exists()


def test_errors_and_listing(sm: Any, s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        sm.describe_training_job(TrainingJobName="no-such-job")
    assert error.value.response["Error"]["Code"] == "ResourceNotFound"
    with pytest.raises(ClientError) as error:
        sm.create_training_job(**job_request(bucket, "bad_name!", "s3://b/k"))
    assert error.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as error:
        sm.create_training_job(**job_request(bucket, unique("x"), "s3://b/k",
                                             ResourceConfig={"InstanceType": "m5.large",
                                                             "InstanceCount": 1,
                                                             "VolumeSizeInGB": 1}))
    assert error.value.response["Error"]["Code"] == "ValidationException"

    prefix = unique("lst")
    names = [f"{prefix}-{i}" for i in range(3)]
    script = {"TrainingImage": "x", "TrainingInputMode": "File",
              "ContainerEntrypoint": ["true"]}
    for name in names:
        request = job_request(bucket, name, "unused", HyperParameters={},
                              AlgorithmSpecification=script)
        del request["InputDataConfig"]
        sm.create_training_job(**request)
    with pytest.raises(ClientError) as error:
        sm.create_training_job(**job_request(bucket, names[0], "unused",
                                             AlgorithmSpecification=script))
    assert error.value.response["Error"]["Code"] == "ResourceInUse"
    for name in names:
        assert wait_job(sm, name)["TrainingJobStatus"] == "Completed"
    first = sm.list_training_jobs(NameContains=prefix, MaxResults=2)
    assert [j["TrainingJobName"] for j in first["TrainingJobSummaries"]] == names[:2]
    second = sm.list_training_jobs(NameContains=prefix, MaxResults=2,
                                   NextToken=first["NextToken"])
    assert [j["TrainingJobName"] for j in second["TrainingJobSummaries"]] == names[2:]
    assert "NextToken" not in second
    by_name = sm.list_training_jobs(NameContains=prefix, SortBy="Name", SortOrder="Descending")
    assert [j["TrainingJobName"] for j in by_name["TrainingJobSummaries"]] == names[::-1]
    assert sm.list_training_jobs(NameContains=prefix, StatusEquals="Failed")[
        "TrainingJobSummaries"] == []
    summary = by_name["TrainingJobSummaries"][0]
    assert summary["TrainingJobStatus"] == "Completed" and "TrainingEndTime" in summary
