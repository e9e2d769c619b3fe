"""Training beyond one process: hosts algo-1..N, requirements.txt, checkpoints, and
capacity shared with Batch (GPU ids, waiting in Starting, never-fitting jobs)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_helpers import make_env
from conftest import Server, start_server
from sagemaker_helpers import job_request, members, tarball, unique, wait_job

TRAIN = textwrap.dedent('''
    import argparse, json, os, socket, time
    import kobako_demo_pkg
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt")
    args = parser.parse_args()
    rank, port = int(os.environ["RANK"]), int(os.environ["MASTER_PORT"])
    host = os.environ["SM_CURRENT_HOST"]
    if rank == 0:
        server = socket.create_server(("127.0.0.1", port))
        server.settimeout(30)
        conn, _ = server.accept()
        peer = conn.recv(100).decode()
    else:
        for _ in range(300):
            try:
                conn = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.1)
        conn.sendall(host.encode())
        peer = "master"
    config = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"],
                                         "resourceconfig.json")))
    step = os.path.join(args.ckpt, "step.txt")
    previous = open(step).read() if os.path.exists(step) else "none"
    if rank == 0:
        with open(step, "w") as f:
            f.write("2")
    keys = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "SM_CURRENT_HOST", "SM_HOSTS")
    with open(os.path.join(os.environ["SM_MODEL_DIR"], host + ".json"), "w") as f:
        json.dump({"env": {k: os.environ[k] for k in keys}, "config": config, "peer": peer,
                   "pkg": kobako_demo_pkg.VALUE, "previous": previous}, f)
    print(f"host {host} rank {rank} done")
''')


def _wheel() -> bytes:
    """A pure-Python wheel, built by hand so that pip installs it offline."""
    buffer = io.BytesIO()
    info = "kobako_demo_pkg-1.0.dist-info"
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr("kobako_demo_pkg/__init__.py", "VALUE = 42\n")
        wheel.writestr(f"{info}/METADATA",
                       "Metadata-Version: 2.1\nName: kobako-demo-pkg\nVersion: 1.0\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: kobako-tests\n"
                       "Root-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return buffer.getvalue()


def test_two_hosts_requirements_and_checkpoints(server: Server, s3: Any, bucket: str) -> None:
    sm = server.client("sagemaker")
    source = tarball({"train.py": TRAIN,
                      "requirements.txt": "./kobako_demo_pkg-1.0-py3-none-any.whl\n"})
    with_wheel = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(source), mode="r:gz") as original, \
            tarfile.open(fileobj=with_wheel, mode="w:gz") as tar:
        for member in original.getmembers():
            tar.addfile(member, original.extractfile(member))
        data = _wheel()
        entry = tarfile.TarInfo("kobako_demo_pkg-1.0-py3-none-any.whl")
        entry.size = len(data)
        tar.addfile(entry, io.BytesIO(data))
    s3.put_object(Bucket=bucket, Key="dist/sourcedir.tar.gz", Body=with_wheel.getvalue())
    s3.put_object(Bucket=bucket, Key="ckpt/step.txt", Body=b"1")
    name = unique("multi")
    request = job_request(bucket, name, f"s3://{bucket}/dist/sourcedir.tar.gz",
                          CheckpointConfig={"S3Uri": f"s3://{bucket}/ckpt"})
    request["HyperParameters"] = {"sagemaker_program": "train.py",
                                  "sagemaker_submit_directory":
                                      f"s3://{bucket}/dist/sourcedir.tar.gz",
                                  "ckpt": '"/opt/ml/checkpoints"'}
    del request["InputDataConfig"]
    request["ResourceConfig"]["InstanceCount"] = 2
    sm.create_training_job(**request)
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    files = members(s3.get_object(Bucket=bucket, Key=f"output/{name}/output/model.tar.gz")
                    ["Body"].read())
    first, second = (json.loads(files[f"algo-{i}.json"]) for i in (1, 2))
    assert first["env"] | {"MASTER_ADDR": "x"} == {
        "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "x",
        "SM_CURRENT_HOST": "algo-1", "SM_HOSTS": '["algo-1", "algo-2"]'}
    assert first["env"]["MASTER_ADDR"] == "127.0.0.1"
    assert (second["env"]["RANK"], second["env"]["SM_CURRENT_HOST"]) == ("1", "algo-2")
    assert first["config"]["current_host"] == "algo-1"
    assert second["config"]["current_host"] == "algo-2"
    assert second["config"]["hosts"] == ["algo-1", "algo-2"]
    assert first["peer"] == "algo-2" and second["peer"] == "master"
    assert first["pkg"] == 42 and first["previous"] == "1"
    assert s3.get_object(Bucket=bucket, Key="ckpt/step.txt")["Body"].read() == b"2"
    logs = server.client("logs")
    streams = sorted(s["logStreamName"] for s in logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/")[
        "logStreams"])
    assert [s.split("/")[1].rsplit("-", 1)[0] for s in streams] == ["algo-1", "algo-2"]


def test_unavailable_requirement_is_skipped_with_a_log_line(server: Server, s3: Any,
                                                             bucket: str) -> None:
    sm = server.client("sagemaker")
    s3.put_object(Bucket=bucket, Key="src/sourcedir.tar.gz", Body=tarball({
        "train.py": "print('trained anyway')\n",
        "requirements.txt": "kobako-surely-no-such-package-anywhere==9.9.9\n"}))
    name = unique("offline")
    request = job_request(bucket, name, f"s3://{bucket}/src/sourcedir.tar.gz")
    request["HyperParameters"] = {"sagemaker_program": "train.py",
                                  "sagemaker_submit_directory":
                                      f"s3://{bucket}/src/sourcedir.tar.gz"}
    del request["InputDataConfig"]
    sm.create_training_job(**request)
    job = wait_job(sm, name, timeout=90)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    logs = server.client("logs")
    events = logs.filter_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                    logStreamNamePrefix=f"{name}/")["events"]
    text = "\n".join(e["message"] for e in events)
    assert "skipping it and training with the packages already installed" in text
    assert "trained anyway" in text


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory,
               monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch_module.setenv("KOBAKO_FAKE_GPUS", "2")
    running = start_server(Path(tmp_path_factory.mktemp("kobako-gpu")) / "data")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _status(sm: Any, name: str) -> tuple[str, str, str]:
    job = sm.describe_training_job(TrainingJobName=name)
    transitions = job["SecondaryStatusTransitions"]
    return job["TrainingJobStatus"], job["SecondaryStatus"], transitions[-1]["StatusMessage"]


def test_gpus_queueing_and_the_ledger_shared_with_batch(gpu_server: Server) -> None:
    sm, s3 = gpu_server.client("sagemaker"), gpu_server.client("s3")
    bucket = unique("gpu-bucket")
    s3.create_bucket(Bucket=bucket)
    algo = {"TrainingImage": "my/algo", "TrainingInputMode": "File",
            "ContainerEntrypoint": ["/bin/sh", "-c",
                                    'echo "cuda=$CUDA_VISIBLE_DEVICES gpus=$SM_NUM_GPUS"; '
                                    "sleep 60"]}
    if (os.cpu_count() or 1) > 64:
        pytest.skip("the hogging job (64 vCPUs, clamped to the host) must fill this host")
    big = unique("hog")
    # ml.g4dn.16xlarge: 64 vCPUs (clamped to the whole host) and 1 GPU.
    request = job_request(bucket, big, "unused", HyperParameters={}, AlgorithmSpecification=algo,
                          ResourceConfig={"InstanceType": "ml.g4dn.16xlarge", "InstanceCount": 1,
                                          "VolumeSizeInGB": 1})
    del request["InputDataConfig"]
    sm.create_training_job(**request)
    deadline = time.monotonic() + 30
    while _status(sm, big)[1] != "Training":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    waiting = unique("waits")
    small = job_request(bucket, waiting, "unused", HyperParameters={},
                        AlgorithmSpecification={**algo, "ContainerEntrypoint": ["true"]})
    del small["InputDataConfig"]
    sm.create_training_job(**small)
    env = make_env(gpu_server.client("batch"))
    batch_job = env.submit(env.definition(["echo", "batch ran"]))
    time.sleep(1.5)
    assert _status(sm, waiting)[:2] == ("InProgress", "Starting")
    assert _status(sm, waiting)[2].startswith("Preparing the instances for training")
    assert env.describe(batch_job)["status"] == "RUNNABLE"

    never = unique("never")
    huge = job_request(bucket, never, "unused", HyperParameters={},
                       AlgorithmSpecification={**algo, "ContainerEntrypoint": ["true"]},
                       ResourceConfig={"InstanceType": "ml.p3.8xlarge", "InstanceCount": 1,
                                       "VolumeSizeInGB": 1})
    del huge["InputDataConfig"]
    sm.create_training_job(**huge)
    job = wait_job(sm, never, timeout=10)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ResourceLimitExceeded")

    sm.stop_training_job(TrainingJobName=big)
    assert wait_job(sm, big)["TrainingJobStatus"] == "Stopped"
    assert wait_job(sm, waiting)["TrainingJobStatus"] == "Completed"
    assert env.wait(batch_job)["status"] == "SUCCEEDED"
    logs = gpu_server.client("logs")
    events = logs.filter_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                    logStreamNamePrefix=f"{big}/")["events"]
    assert [e["message"] for e in events] == ["cuda=0 gpus=1"]
