"""SageMaker hosting against a real kobako server: train, deploy, invoke, restart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server, start_server
from sagemaker_helpers import (
    INFERENCE_PY,
    ROLE,
    job_request,
    stage,
    tarball,
    unique,
    wait_endpoint,
    wait_job,
)


def _deploy(sm: Any, artifact: str, variants: dict[str, float] | None = None,
            inference: str | None = None) -> str:
    """Model + config + endpoint; returns the endpoint name (not yet waited on)."""
    name = unique("ep")
    container: dict[str, Any] = {"Image": "kobako/python-inference", "ModelDataUrl": artifact}
    if inference is not None:
        container["Environment"] = {"SAGEMAKER_PROGRAM": inference}
    sm.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE)
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": variant, "ModelName": name, "InstanceType": "ml.t2.medium",
         "InitialInstanceCount": 1, "InitialVariantWeight": weight}
        for variant, weight in (variants or {"AllTraffic": 1.0}).items()])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return name


@pytest.fixture(autouse=True)
def _no_endpoint_left(server: Server) -> Iterator[None]:
    """Endpoints hold host capacity while they run: none outlives its test, so that the
    jobs of later tests on this shared server are not kept waiting."""
    yield
    sm = server.client("sagemaker")
    for endpoint in sm.list_endpoints(MaxResults=100)["Endpoints"]:
        sm.delete_endpoint(EndpointName=endpoint["EndpointName"])


def _invoke(rt: Any, endpoint: str, payload: Any, **kwargs: Any) -> tuple[Any, str]:
    response = rt.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                  Body=json.dumps(payload), **kwargs)
    return json.loads(response["Body"].read()), response["InvokedProductionVariant"]


def test_train_then_deploy_and_invoke(server: Server, s3: Any, bucket: str) -> None:
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    source = stage(s3, bucket)
    job_name = unique("tr")
    sm.create_training_job(**job_request(bucket, job_name, source))
    job = wait_job(sm, job_name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    endpoint = _deploy(sm, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] in (
        "Creating", "InService")
    described = wait_endpoint(sm, endpoint)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert described["ProductionVariants"][0]["VariantName"] == "AllTraffic"

    result, variant = _invoke(rt, endpoint, {"instances": [1, 2]})
    assert result == {"predictions": [3.0, 6.0]}
    assert variant == "AllTraffic"

    with pytest.raises(ClientError) as error:
        _invoke(rt, endpoint, {"fail": True})
    response = error.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "the model refuses this input" in response["Error"]["Message"]
    assert "(500)" in response["Error"]["Message"]

    logs = server.client("logs")
    streams: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20  # the model server's lines are shipped in batches
    while not streams and time.monotonic() < deadline:
        try:
            streams = logs.describe_log_streams(
                logGroupName=f"/aws/sagemaker/Endpoints/{endpoint}")["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            time.sleep(0.2)
    assert streams and streams[0]["logStreamName"].startswith("AllTraffic/")
    # The model server's access-log lines (batched, not one write per request) arrive.
    # Batches arrive one by one: wait for the one with the failed invocation's line.
    stream_name, found = streams[0]["logStreamName"], []
    while not any(" 500 " in line for line in found) and time.monotonic() < deadline:
        found = [e["message"] for e in logs.get_log_events(
            logGroupName=f"/aws/sagemaker/Endpoints/{endpoint}",
            logStreamName=stream_name)["events"] if '"POST /invocations' in e["message"]]
        time.sleep(0.2)
    assert found and any(" 500 " in line for line in found)

    listed = sm.list_endpoints(NameContains=endpoint)["Endpoints"]
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in listed] == [
        (endpoint, "InService")]
    sm.delete_endpoint(EndpointName=endpoint)
    with pytest.raises(ClientError) as error:
        sm.describe_endpoint(EndpointName=endpoint)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as error:
        _invoke(rt, endpoint, {"instances": [1]})
    assert error.value.response["Error"]["Code"] == "ValidationError"


def _model_artifact(s3: Any, bucket: str, files: dict[str, str]) -> str:
    key = f"models/{unique('m')}/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=tarball(files))
    return f"s3://{bucket}/{key}"


def test_variants_weights_target_variant_and_update(server: Server, s3: Any,
                                                    bucket: str) -> None:
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    artifact = _model_artifact(s3, bucket, {"model.json": json.dumps({"mean": 2.0}),
                                            "code/inference.py": INFERENCE_PY})
    endpoint = _deploy(sm, artifact, {"blue": 1.0, "green": 0.0})
    assert wait_endpoint(sm, endpoint)["EndpointStatus"] == "InService"
    seen = {_invoke(rt, endpoint, {"instances": [1]})[1] for _ in range(5)}
    assert seen == {"blue"}
    assert _invoke(rt, endpoint, {"instances": [4]}, TargetVariant="green") == (
        {"predictions": [8.0]}, "green")
    with pytest.raises(ClientError) as error:
        _invoke(rt, endpoint, {"instances": [4]}, TargetVariant="purple")
    assert error.value.response["Error"]["Code"] == "ValidationError"

    # An echo model (no inference.py): the defaults are JSON in, JSON out.
    echo = _model_artifact(s3, bucket, {"weights.bin": "x"})
    config = unique("cfg")
    sm.create_model(ModelName=config, PrimaryContainer={"Image": "x", "ModelDataUrl": echo},
                    ExecutionRoleArn=ROLE)
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[
        {"VariantName": "echo", "ModelName": config, "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1}])
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    updated = wait_endpoint(sm, endpoint)
    assert updated["EndpointStatus"] == "InService"
    assert updated["EndpointConfigName"] == config
    assert _invoke(rt, endpoint, {"a": 1}) == ({"a": 1}, "echo")
    # A body above the relay's join limit goes out as head + body without a copy.
    large = {"values": list(range(200_000))}
    assert _invoke(rt, endpoint, large) == (large, "echo")
    sm.delete_endpoint(EndpointName=endpoint)


def test_failed_health_check_and_hosting_errors(server: Server, s3: Any, bucket: str) -> None:
    sm = server.client("sagemaker")
    broken = _model_artifact(s3, bucket, {"code/inference.py":
                                          "def model_fn(d):\n    raise RuntimeError('nope')\n"})
    endpoint = _deploy(sm, broken)
    failed = wait_endpoint(sm, endpoint)
    assert failed["EndpointStatus"] == "Failed"
    assert "did not pass the ping health check" in failed["FailureReason"]

    cases = [
        (lambda: sm.describe_model(ModelName="nope"), "Could not find model"),
        (lambda: sm.describe_endpoint_config(EndpointConfigName="nope"),
         "Could not find endpoint configuration"),
        (lambda: sm.describe_endpoint(EndpointName="nope"), "Could not find endpoint"),
        (lambda: sm.create_endpoint(EndpointName=unique("e"), EndpointConfigName="nope"),
         "Could not find endpoint configuration"),
        (lambda: sm.create_model(ModelName=endpoint, PrimaryContainer={"Image": "x"},
                                 ExecutionRoleArn=ROLE), "Cannot create already existing model"),
        (lambda: sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint),
         "Cannot create already existing endpoint"),
        (lambda: sm.create_endpoint_config(EndpointConfigName=unique("c"), ProductionVariants=[
            {"VariantName": "v", "ModelName": "nope", "InstanceType": "ml.m5.large",
             "InitialInstanceCount": 1}]), "Could not find model"),
    ]
    for call, message in cases:
        with pytest.raises(ClientError) as error:
            call()
        assert error.value.response["Error"]["Code"] == "ValidationException"
        assert message in error.value.response["Error"]["Message"]

    models = sm.list_models(NameContains=endpoint)["Models"]
    assert [m["ModelName"] for m in models] == [endpoint]
    configs = sm.list_endpoint_configs(NameContains=endpoint)["EndpointConfigs"]
    assert [c["EndpointConfigName"] for c in configs] == [endpoint]
    sm.delete_endpoint(EndpointName=endpoint)
    sm.delete_endpoint_config(EndpointConfigName=endpoint)
    sm.delete_model(ModelName=endpoint)
    assert sm.list_models(NameContains=endpoint)["Models"] == []


def test_restart_fails_running_jobs_and_restores_endpoints(tmp_path: Path) -> None:
    first = start_server(tmp_path / "data")
    try:
        sm, s3 = first.client("sagemaker"), first.client("s3")
        s3.create_bucket(Bucket="restart")
        source = stage(s3, "restart")
        artifact = _model_artifact(s3, "restart", {"model.json": json.dumps({"mean": 1.5}),
                                                   "code/inference.py": INFERENCE_PY})
        job = unique("sleepy")
        sm.create_training_job(**job_request("restart", job, source, mode="sleep"))
        while sm.describe_training_job(TrainingJobName=job)["SecondaryStatus"] != "Training":
            pass
        # On a small host the endpoint waits (Creating) for the job's capacity; on a
        # larger one it is InService by now. Both are redeployed after the kill.
        endpoint = _deploy(sm, artifact)
    finally:
        first.kill()
    second = start_server(tmp_path / "data")
    try:
        sm, rt = second.client("sagemaker"), second.client("sagemaker-runtime")
        described = wait_job(sm, job, timeout=10)
        assert described["TrainingJobStatus"] == "Failed"
        assert "kobako server stopped" in described["FailureReason"]
        assert wait_endpoint(sm, endpoint)["EndpointStatus"] == "InService"
        assert _invoke(rt, endpoint, {"instances": [2]})[0] == {"predictions": [3.0]}
    finally:
        second.kill()
    third = start_server(tmp_path / "data")  # an InService endpoint comes back too
    try:
        sm, rt = third.client("sagemaker"), third.client("sagemaker-runtime")
        assert wait_endpoint(sm, endpoint)["EndpointStatus"] == "InService"
        assert _invoke(rt, endpoint, {"instances": [2]})[0] == {"predictions": [3.0]}
    finally:
        third.stop()
