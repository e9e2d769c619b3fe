"""SageMaker bring-your-own-container against a real engine: a busybox image whose
`train` and `serve` are shell scripts, run by a kobako configured with
`[runtime] sagemaker = "container"` on a Podman socket this module starts itself."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server, start_server
from podman_helpers import TOOLS, Podman, podman_engine
from sagemaker_helpers import ROLE, members, tarball, unique, wait_endpoint, wait_job

IMAGE = f"localhost/kobako-test/sagemaker-byoc:{os.getpid()}"
JOB_LABEL = "kobako.job-id"

TRAIN = r"""#!/bin/sh
# The SageMaker training contract: config and data under /opt/ml/input, model out.
set -e
echo "train: starting in $(cat /etc/kobako-test-image)"
test -e /etc/kobako-test-image
hps=$(tr -d ' \n' < /opt/ml/input/config/hyperparameters.json)
if [ "$(cat /opt/ml/input/data/train/mode.txt)" = fail ]; then
  echo "bad data" > /opt/ml/output/failure
  exit 2
fi
total=0
for x in $(cat /opt/ml/input/data/train/numbers.txt); do total=$((total + x)); done
echo "train: loss=0.25 total=$total"
echo "total=$total hps=$hps job=$TRAINING_JOB_NAME" > /opt/ml/model/model.txt
echo "done" > /opt/ml/output/data/report.txt
"""

# One host of a multi-instance job: algo-1 serves on the master port, the others
# connect to it by name; MODE=fail makes algo-2 fail (algo-1 then waits forever),
# MODE=sleep keeps every host busy.
CLUSTER = r"""#!/bin/sh
set -e
me=$SM_CURRENT_HOST
echo "$me: up as $(hostname)"
if [ "$MODE" = sleep ]; then exec sleep 300; fi
if [ "$MODE" = fail ] && [ "$me" = algo-2 ]; then
  echo "$me broke" > /opt/ml/output/failure
  exit 3
fi
if [ "$me" = algo-1 ]; then
  got=$(echo "hello from $me" | nc -l -p "$MASTER_PORT")
else
  i=0
  until got=$(echo "hello from $me" | nc algo-1 "$MASTER_PORT" 2>/dev/null); do
    i=$((i + 1))
    [ "$i" -lt 300 ] || { echo "$me: algo-1 never answered"; exit 4; }
    sleep 0.1
  done
fi
echo "$me: got $got"
config=$(tr -d ' \n' < /opt/ml/input/config/resourceconfig.json)
printf '%s\n' "hostname=$(hostname)" "current=$SM_CURRENT_HOST" "hosts=$SM_HOSTS" \
  "master=$MASTER_ADDR:$MASTER_PORT" "rank=$RANK/$WORLD_SIZE" "got=$got" \
  "config=$config" > "/opt/ml/model/$me.txt"
"""

SERVE = """#!/bin/sh
echo "serve: listening on 8080"
exec nc -ll -p 8080 -e /usr/local/bin/handle
"""

# One HTTP exchange per connection (nc -ll -e runs it with the socket on stdin/stdout).
HANDLE = r"""#!/bin/sh
cr=$(printf '\r')
read -r method path proto
len=0
while read -r line; do
  line=${line%"$cr"}
  [ -z "$line" ] && break
  case "$line" in
    [Cc]ontent-[Ll]ength:*) len=${line#*:}; len=$((len + 0));;
  esac
done
body=""
if [ "$len" -gt 0 ]; then body=$(head -c "$len"); fi
case "$method $path" in
  "GET /ping") out="";;
  "POST /invocations")
    out="{\"model\": \"$(cat /opt/ml/model/model.txt)\", \"input\": \"$body\"}";;
  *) printf 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
     exit 0;;
esac
printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
printf 'Content-Length: %d\r\nConnection: close\r\n\r\n%s' "${#out}" "$out"
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    files = {"/usr/local/bin/train": TRAIN, "/usr/local/bin/serve": SERVE,
             "/usr/local/bin/handle": HANDLE, "/usr/local/bin/cluster": CLUSTER}
    with podman_engine(tmp_path_factory.mktemp("podman-sm"), IMAGE,
                       (*TOOLS, "nc", "printf", "hostname"), files) as podman:
        yield podman


@pytest.fixture(scope="module")
def srv(engine: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("kobako-sm-containers")
    config = root / "kobako.toml"
    config.write_text(f'[runtime]\ndefault = "process"\nsagemaker = "container"\n'
                      f'container_host = "{engine.host}"\npull_timeout = 30\n')
    running = start_server(root / "data", config=config)
    yield running
    running.stop()
    assert " -> 500 " not in running.log(), "a request was answered with HTTP 500"


def _labelled(engine: Podman, arn: str) -> list[Any]:
    return list(engine.client.containers.list(all=True,
                                              filters={"label": f"{JOB_LABEL}={arn}"}))


def _none_left(listing: Callable[[], list[Any]], timeout: float) -> bool:
    """Poll `listing` until it is empty; False when it still is not after `timeout`."""
    deadline = time.monotonic() + timeout
    while listing():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _gone(engine: Podman, arn: str, timeout: float = 15) -> bool:
    return _none_left(lambda: _labelled(engine, arn), timeout)


def _networks(engine: Podman, arn: str) -> list[Any]:
    return list(engine.client.networks.list(filters={"label": f"{JOB_LABEL}={arn}"}))


def _no_network(engine: Podman, arn: str, timeout: float = 15) -> bool:
    """The job's network is removed once its hosts are, which may be just after the job
    reads as ended."""
    return _none_left(lambda: _networks(engine, arn), timeout)


def _training_request(bucket: str, name: str, prefix: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name, "RoleArn": ROLE,
        "HyperParameters": {"epochs": "2", "lr": "0.5"},
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE, "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "train:loss", "Regex": r"loss=([0-9.]+)"}]},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{prefix}/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                           "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }


def _log_lines(srv: Server, group: str, prefix: str) -> list[str]:
    logs = srv.client("logs")
    streams = logs.describe_log_streams(logGroupName=group,
                                        logStreamNamePrefix=prefix)["logStreams"]
    lines: list[str] = []
    for stream in streams:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"],
                                     startFromHead=True)["events"]
        lines += [str(e["message"]) for e in events]
    return lines


def _train(s3: Any, sm: Any, bucket: str, name: str, prefix: str, numbers: bytes,
           mode: bytes) -> tuple[str, dict[str, Any]]:
    """Stage what the image's train script reads under `prefix`, run a one-host training
    job on it and wait for the job; returns its ARN and description."""
    s3.put_object(Bucket=bucket, Key=f"{prefix}/numbers.txt", Body=numbers)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/mode.txt", Body=mode)
    arn = sm.create_training_job(**_training_request(bucket, name, prefix))["TrainingJobArn"]
    return arn, wait_job(sm, name, timeout=45)


def test_training_runs_the_image_train(srv: Server, engine: Podman) -> None:
    s3, sm = srv.client("s3"), srv.client("sagemaker")
    bucket = unique("byoc")
    s3.create_bucket(Bucket=bucket)
    name = unique("byoc-train")
    arn, job = _train(s3, sm, bucket, name, "data", numbers=b"1 2 3 4\n", mode=b"ok\n")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    key = f"output/{name}/output/model.tar.gz"
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{bucket}/{key}"
    model = members(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    text = model["model.txt"].decode()
    assert text.startswith("total=10 hps=") and text.strip().endswith(f"job={name}")
    hps = json.loads(text.split("hps=", 1)[1].split(" job=", 1)[0])
    assert hps == {"epochs": "2", "lr": "0.5"}
    output = members(s3.get_object(Bucket=bucket, Key=f"output/{name}/output/output.tar.gz")
                     ["Body"].read())
    assert output["report.txt"] == b"done\n"
    assert [m["MetricName"] for m in job["FinalMetricDataList"]] == ["train:loss"]
    lines = _log_lines(srv, "/aws/sagemaker/TrainingJobs", name)
    assert "train: starting in busybox" in lines and "train: loss=0.25 total=10" in lines
    assert _gone(engine, arn), "the training container was not removed"


def test_training_failure_reads_output_failure(srv: Server, engine: Podman) -> None:
    s3, sm = srv.client("s3"), srv.client("sagemaker")
    bucket = unique("byoc")
    s3.create_bucket(Bucket=bucket)
    name = unique("byoc-fail")
    arn, job = _train(s3, sm, bucket, name, "bad", numbers=b"1\n", mode=b"fail\n")
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: bad data"
    assert _gone(engine, arn)


def _cluster_request(bucket: str, name: str, mode: str, runtime: int = 120
                     ) -> dict[str, Any]:
    request = _training_request(bucket, name, "data")
    request["AlgorithmSpecification"] = {
        "TrainingImage": IMAGE, "TrainingInputMode": "File",
        "ContainerEntrypoint": ["/usr/local/bin/cluster"]}
    request["ResourceConfig"]["InstanceCount"] = 2
    request["Environment"] = {"MODE": mode}
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": runtime}
    return request


def _wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.1)
    return found


def test_two_hosts_reach_each_other_by_name(srv: Server, engine: Podman) -> None:
    """Issue #9: one container per host, on a network of the job's own where algo-2
    connects to algo-1 by name; each host has its own resourceconfig.json."""
    s3, sm = srv.client("s3"), srv.client("sagemaker")
    bucket = unique("byoc")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data/numbers.txt", Body=b"1\n")
    name = unique("byoc-cluster")
    arn = sm.create_training_job(**_cluster_request(bucket, name, "ok"))["TrainingJobArn"]
    job = wait_job(sm, name, timeout=60)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    model = members(s3.get_object(Bucket=bucket, Key=f"output/{name}/output/model.tar.gz")
                    ["Body"].read())
    assert sorted(model) == ["algo-1.txt", "algo-2.txt"]
    for rank, host in enumerate(("algo-1", "algo-2")):
        fields = dict(line.split("=", 1) for line in model[f"{host}.txt"].decode().splitlines())
        assert fields["hostname"] == host and fields["current"] == host
        assert json.loads(fields["hosts"]) == ["algo-1", "algo-2"]
        assert fields["master"] == "algo-1:7777" and fields["rank"] == f"{rank}/2"
        other = "algo-2" if rank == 0 else "algo-1"
        assert fields["got"] == f"hello from {other}"
        config = json.loads(fields["config"])
        assert config["current_host"] == host and config["hosts"] == ["algo-1", "algo-2"]
        assert config["network_interface_name"] == "eth0"
    lines = _log_lines(srv, "/aws/sagemaker/TrainingJobs", name)
    assert "algo-1: up as algo-1" in lines and "algo-2: got hello from algo-1" in lines
    assert _gone(engine, arn), "the training containers were not removed"
    assert _no_network(engine, arn), "the job's network was not removed"


def test_a_failing_host_fails_the_job_and_stops_the_others(srv: Server, engine: Podman
                                                           ) -> None:
    s3, sm = srv.client("s3"), srv.client("sagemaker")
    bucket = unique("byoc")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data/numbers.txt", Body=b"1\n")
    name = unique("byoc-cluster-fail")
    arn = sm.create_training_job(**_cluster_request(bucket, name, "fail"))["TrainingJobArn"]
    job = wait_job(sm, name, timeout=45)  # algo-1 would wait for algo-2 forever
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: algo-2 broke"
    assert _gone(engine, arn) and _no_network(engine, arn)


def test_stop_and_max_runtime_stop_every_host(srv: Server, engine: Podman) -> None:
    s3, sm = srv.client("s3"), srv.client("sagemaker")
    bucket = unique("byoc")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data/numbers.txt", Body=b"1\n")
    stopped, timed = unique("byoc-cluster-stop"), unique("byoc-cluster-max")
    arn = sm.create_training_job(**_cluster_request(bucket, stopped, "sleep"))[
        "TrainingJobArn"]
    timed_arn = sm.create_training_job(**_cluster_request(bucket, timed, "sleep", runtime=3))[
        "TrainingJobArn"]
    _wait_for(lambda: [c.status for c in _labelled(engine, arn)] == ["running"] * 2, 30,
              "the hosts never ran")
    assert len(_networks(engine, arn)) == 1
    sm.stop_training_job(TrainingJobName=stopped)
    job = wait_job(sm, stopped, timeout=30)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    job = wait_job(sm, timed, timeout=30)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped",
                                                                  "MaxRuntimeExceeded")
    for job_arn in (arn, timed_arn):
        assert _gone(engine, job_arn) and _no_network(engine, job_arn)


def test_restart_removes_the_hosts_and_their_network(engine: Podman, tmp_path: Path) -> None:
    """kill -9 while both hosts run: the next start fails the job and removes its
    containers and network."""
    config = tmp_path / "kobako.toml"
    config.write_text(f'[runtime]\nsagemaker = "container"\ncontainer_host = "{engine.host}"\n')
    first = start_server(tmp_path / "data", config=config)
    try:
        s3, sm = first.client("s3"), first.client("sagemaker")
        bucket = unique("byoc")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="data/numbers.txt", Body=b"1\n")
        name = unique("byoc-cluster-orphan")
        arn = sm.create_training_job(**_cluster_request(bucket, name, "sleep"))[
            "TrainingJobArn"]
        _wait_for(lambda: len(_labelled(engine, arn)) == 2, 30, "hosts never started")
    finally:
        first.kill()
    assert len(_networks(engine, arn)) == 1
    second = start_server(tmp_path / "data", config=config)
    try:
        job = wait_job(second.client("sagemaker"), name, timeout=10)
        assert job["TrainingJobStatus"] == "Failed"
        assert job["FailureReason"].startswith("InternalServerError: the kobako server stopped")
        assert _gone(engine, arn), "the orphan hosts were not removed"
        assert _no_network(engine, arn), "the orphan network was not removed"
    finally:
        second.stop()


def test_endpoint_serves_from_the_image(srv: Server, engine: Podman) -> None:
    s3, sm, runtime = srv.client("s3"), srv.client("sagemaker"), srv.client("sagemaker-runtime")
    bucket = unique("byoc")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="model/model.tar.gz",
                  Body=tarball({"model.txt": "weights-v1\n"}))
    model, config, endpoint = unique("byoc-model"), unique("byoc-cfg"), unique("byoc-ep")
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/model/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[{
        "VariantName": "main", "ModelName": model, "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1}])
    arn = sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)["EndpointArn"]
    try:
        described = wait_endpoint(sm, endpoint, timeout=45)
        assert described["EndpointStatus"] == "InService", described.get("FailureReason")
        running = _labelled(engine, arn)
        assert len(running) == 1 and running[0].status == "running"
        answer = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"1,2,3",
                                         ContentType="text/csv")
        assert answer["ContentType"] == "application/json"
        assert json.loads(answer["Body"].read()) == {"model": "weights-v1", "input": "1,2,3"}
        # Logs are shipped as the container writes them: wait for the line, as a
        # CloudWatch reader would.
        deadline = time.monotonic() + 15
        lines: list[str] = []
        while "serve: listening on 8080" not in lines and time.monotonic() < deadline:
            try:
                lines = _log_lines(srv, f"/aws/sagemaker/Endpoints/{endpoint}", "main/")
            except ClientError:
                lines = []
            time.sleep(0.1)
        assert "serve: listening on 8080" in lines
    finally:
        sm.delete_endpoint(EndpointName=endpoint)
    assert _gone(engine, arn), "DeleteEndpoint left the serving container"


def test_image_in_a_local_directory_still_runs_as_a_process(tmp_path: Path) -> None:
    """A TrainingImage naming a directory is never a container image (placement)."""
    from kobako.sagemaker.placement import Placer

    placer = Placer("container")
    assert placer.choose(str(tmp_path)).runtime == "process"
    assert placer.choose("kobako/python").runtime == "process"
    assert placer.choose(IMAGE).runtime == "container"


def test_sagemaker_sdk_estimator_and_predictor(srv: Server, engine: Podman, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The SageMaker Python SDK (extra `sagemaker-sdk`) drives the same image: fit, deploy,
    predict. Skipped where the SDK is not installed."""
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")  # warnings are errors here
    (tmp_path / "sdk.yaml").write_text(  # no telemetry calls to AWS from a test
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
        "      TelemetryOptOut: true\n")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(tmp_path / "sdk.yaml"))
    sagemaker = pytest.importorskip("sagemaker")
    import boto3
    from sagemaker.estimator import Estimator
    from sagemaker.predictor import Predictor

    monkeypatch.setenv("AWS_ENDPOINT_URL", srv.url)  # the SDK's own S3 and STS clients
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    boto_session = boto3.Session(region_name="us-east-1")
    bucket = unique("byoc-sdk")
    s3 = srv.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data/numbers.txt", Body=b"5 6\n")
    s3.put_object(Bucket=bucket, Key="data/mode.txt", Body=b"ok\n")
    session = sagemaker.Session(boto_session=boto_session, sagemaker_client=srv.client(
        "sagemaker"), sagemaker_runtime_client=srv.client("sagemaker-runtime"),
        default_bucket=bucket)
    estimator = Estimator(image_uri=IMAGE, role=ROLE, instance_count=1,
                          instance_type="ml.m5.large", output_path=f"s3://{bucket}/output",
                          sagemaker_session=session, hyperparameters={"epochs": 1},
                          base_job_name="byoc-sdk")
    estimator.fit({"train": f"s3://{bucket}/data/"}, wait=False)
    name = estimator.latest_training_job.name
    job = wait_job(srv.client("sagemaker"), name, timeout=45)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    endpoint = unique("byoc-sdk-ep")
    estimator.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                     endpoint_name=endpoint, wait=False)
    sm = srv.client("sagemaker")
    try:
        assert wait_endpoint(sm, endpoint, timeout=45)["EndpointStatus"] == "InService"
        answer = Predictor(endpoint, sagemaker_session=session).predict(b"7")
        assert answer == (f'{{"model": "total=11 hps={{"epochs":"1"}} job={name}", '
                          f'"input": "7"}}').encode()
    finally:
        sm.delete_endpoint(EndpointName=endpoint)
