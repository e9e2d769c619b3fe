"""Endpoints book their instances in the ledger training and Batch jobs share: a GPU
endpoint holds its GPU, a training job needing it waits, capacity comes back on
update, failure and delete (tested with KOBAKO_FAKE_GPUS=1)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server, start_server
from sagemaker_helpers import ROLE, job_request, tarball, unique, wait_endpoint, wait_job

# The model answers with the devices its process was given.
DEVICES_PY = '''
import os

def predict_fn(data, model):
    return {"cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}
'''


@pytest.fixture(scope="module")
def one_gpu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KOBAKO_FAKE_GPUS", "1")
        patch.setenv("KOBAKO_ENDPOINT_CAPACITY_WAIT_SECONDS", "5")
        running = start_server(Path(tmp_path_factory.mktemp("kobako-ep-gpu")) / "data")
    yield running
    running.stop()
    assert " -> 500 " not in running.log()


def _config(sm: Any, bucket: str, instance_type: str) -> str:
    name = unique("cfg")
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": "kobako/python-inference", "ModelDataUrl": f"s3://{bucket}/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": "main", "ModelName": name, "InstanceType": instance_type,
         "InitialInstanceCount": 1}])
    return name


def _devices(server: Server, endpoint: str) -> Any:
    answer = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Body=b"{}")
    return json.loads(answer["Body"].read())["cuda"]


def _secondary(sm: Any, job: str) -> tuple[str, str]:
    described = sm.describe_training_job(TrainingJobName=job)
    return described["SecondaryStatus"], described["SecondaryStatusTransitions"][-1][
        "StatusMessage"]


def test_gpu_endpoint_holds_its_gpu_until_updated_and_deleted(one_gpu: Server) -> None:
    sm, s3 = one_gpu.client("sagemaker"), one_gpu.client("s3")
    bucket = unique("ep-gpu")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="model.tar.gz",
                  Body=tarball({"code/inference.py": DEVICES_PY}))
    gpu_config = _config(sm, bucket, "ml.g4dn.xlarge")
    first = unique("ep")
    sm.create_endpoint(EndpointName=first, EndpointConfigName=gpu_config)
    assert wait_endpoint(sm, first)["EndpointStatus"] == "InService"
    assert _devices(one_gpu, first) == "0"

    # Four GPUs can never be had here: refused as AWS refuses an instance over quota.
    with pytest.raises(ClientError) as error:
        sm.create_endpoint(EndpointName=unique("ep"),
                           EndpointConfigName=_config(sm, bucket, "ml.p3.8xlarge"))
    assert error.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert "ml.p3.8xlarge for endpoint usage" in error.value.response["Error"]["Message"]

    # A training job that needs the GPU waits while the endpoint serves from it.
    job = unique("needs-gpu")
    request = job_request(bucket, job, "unused", HyperParameters={}, AlgorithmSpecification={
        "TrainingImage": "my/algo", "TrainingInputMode": "File",
        "ContainerEntrypoint": ["/bin/sh", "-c", 'echo "cuda=$CUDA_VISIBLE_DEVICES"']},
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1,
                        "VolumeSizeInGB": 1})
    del request["InputDataConfig"]
    sm.create_training_job(**request)
    # A second GPU endpoint cannot fit now either: it fails once the capacity wait
    # (5 s here) is over, with AWS's reason.
    second = unique("ep")
    sm.create_endpoint(EndpointName=second, EndpointConfigName=gpu_config)
    assert sm.describe_endpoint(EndpointName=second)["EndpointStatus"] == "Creating"
    failed = wait_endpoint(sm, second, timeout=30)
    assert failed["EndpointStatus"] == "Failed"
    assert failed["FailureReason"].startswith("Unable to provision requested ML compute "
                                              "capacity")
    status, message = _secondary(sm, job)
    assert status == "Starting" and "waiting for free capacity" in message

    # Moved to a CPU instance, the endpoint serves without a GPU. (On a small host its
    # CPUs still keep the job waiting; on a larger one the job may run from here.)
    sm.update_endpoint(EndpointName=first,
                       EndpointConfigName=_config(sm, bucket, "ml.m5.large"))
    updated = wait_endpoint(sm, first, timeout=60)
    assert updated["EndpointStatus"] == "InService", updated.get("FailureReason")
    assert _devices(one_gpu, first) == ""

    # Deleted, it gives everything back; the job runs on the GPU, which the update
    # gave back too (else the job would wait for ever).
    sm.delete_endpoint(EndpointName=first)
    sm.delete_endpoint(EndpointName=second)
    assert wait_job(sm, job, timeout=60)["TrainingJobStatus"] == "Completed"
    logs = one_gpu.client("logs")
    events = logs.filter_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                    logStreamNamePrefix=f"{job}/")["events"]
    assert [e["message"] for e in events] == ["cuda=0"]

    # Nothing is held any more: a new GPU endpoint fits at once.
    third = unique("ep")
    started = time.monotonic()
    sm.create_endpoint(EndpointName=third, EndpointConfigName=gpu_config)
    assert wait_endpoint(sm, third)["EndpointStatus"] == "InService"
    assert time.monotonic() - started < 5
    assert _devices(one_gpu, third) == "0"
    sm.delete_endpoint(EndpointName=third)
