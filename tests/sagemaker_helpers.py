"""Shared helpers for the SageMaker tests: a script-mode source tree, jobs, polling."""

from __future__ import annotations

import io
import os
import tarfile
import textwrap
import time
from collections.abc import Callable
from typing import Any

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"

TRAIN_PY = textwrap.dedent('''
    import argparse, json, os, shutil, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--mode", default="ok")
    args = parser.parse_args()
    if args.mode == "fail":
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
            f.write("boom: the data is bad")
        sys.exit(3)
    if args.mode == "sleep":
        print("sleeping", flush=True)
        time.sleep(120)
    channel = os.environ["SM_CHANNEL_TRAIN"]
    files = sorted(os.listdir(channel))
    values = [float(x) for x in open(os.path.join(channel, "data.csv")).read().split()]
    mean = sum(values) / len(values)
    for epoch in range(args.epochs):
        print(f"epoch {epoch} train_loss={1.0 / (epoch + 1):.4f}")
    model_dir = os.environ["SM_MODEL_DIR"]
    keys = ["SM_NUM_CPUS", "SM_NUM_GPUS", "SM_HOSTS", "SM_CURRENT_HOST", "SM_CHANNELS"]
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump({"argv": sys.argv[1:], "hps": json.loads(os.environ["SM_HPS"]),
                   "files": files, "mean": mean, "env": {k: os.environ[k] for k in keys},
                   "cwd": os.getcwd(),
                   "config": sorted(os.listdir(os.path.join(os.environ["SM_INPUT_DIR"],
                                                            "config"))),
                   "training_env": json.loads(os.environ["SM_TRAINING_ENV"])["job_name"]}, f)
    os.makedirs(os.path.join(model_dir, "code"))
    shutil.copy("inference.py", os.path.join(model_dir, "code", "inference.py"))
    with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt"), "w") as f:
        f.write("done")
''')

INFERENCE_PY = textwrap.dedent('''
    import json, os

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "model.json")) as f:
            return json.load(f)

    def predict_fn(data, model):
        if data.get("fail"):
            raise ValueError("the model refuses this input")
        return {"predictions": [x * model["mean"] for x in data["instances"]]}
''')


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


_n = iter(range(1_000_000))


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_n)}"


def stage(s3: Any, bucket: str) -> str:
    """Upload the source tarball and training data; returns the source URI."""
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz",
                  Body=tarball({"train.py": TRAIN_PY, "inference.py": INFERENCE_PY}))
    s3.put_object(Bucket=bucket, Key="data/train/data.csv", Body=b"1\n2\n3\n6\n")
    s3.put_object(Bucket=bucket, Key="data/train/sub/extra.txt", Body=b"x")
    return f"s3://{bucket}/code/sourcedir.tar.gz"


def job_request(bucket: str, name: str, source: str, mode: str = "ok",
                **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "HyperParameters": {"sagemaker_program": "train.py",
                            "sagemaker_submit_directory": source,
                            "epochs": "3", "lr": "0.1", "mode": mode},
        "AlgorithmSpecification": {
            "TrainingImage": "kobako/python", "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "train:loss",
                                   "Regex": r"train_loss=([0-9.]+)"}]},
        "RoleArn": ROLE,
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data/train",
            "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                           "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    request.update(extra)
    return request


def wait_job(sm: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"training job {name} still {job['SecondaryStatus']}")
        time.sleep(0.1)


def wait_endpoint(sm: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        endpoint: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
        if endpoint["EndpointStatus"] not in ("Creating", "Updating", "SystemUpdating"):
            return endpoint
        if time.monotonic() > deadline:
            raise AssertionError(f"endpoint {name} still {endpoint['EndpointStatus']}")
        time.sleep(0.1)


def wait_ended(describe: Callable[[], dict[str, Any]], status_field: str, what: str,
               timeout: float = 60) -> dict[str, Any]:
    """Poll a job's Describe call until the job has ended (neither InProgress nor
    Stopping); `what` names the job in the failure."""
    deadline = time.monotonic() + timeout
    while True:
        job = describe()
        if job[status_field] not in ("InProgress", "Stopping"):
            return job
        assert time.monotonic() < deadline, f"{what} still running"
        time.sleep(0.1)
