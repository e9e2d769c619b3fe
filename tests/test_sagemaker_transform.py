"""SageMaker batch transform against a real kobako server: a model over an S3 prefix."""

from __future__ import annotations

import textwrap
from typing import Any

from conftest import Server
from sagemaker_helpers import ROLE, tarball, unique, wait_ended

INFERENCE = textwrap.dedent('''
    import json, os

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "model.json")) as f:
            return json.load(f)

    def transform_fn(model, body, content_type, accept):
        lines = [line for line in body.decode().splitlines() if line.strip()]
        if "bad" in lines:
            raise ValueError("cannot score bad")
        out = "\\n".join(f"{float(x) * model['k']:g}|{len(lines)}|{content_type}" for x in lines)
        return out, accept
''')


def _wait(sm: Any, name: str) -> dict[str, Any]:
    return wait_ended(lambda: sm.describe_transform_job(TransformJobName=name),
                      "TransformJobStatus", f"transform job {name}")


def _model(sm: Any, s3: Any, bucket: str) -> str:
    s3.put_object(Bucket=bucket, Key="model/model.tar.gz",
                  Body=tarball({"model.json": '{"k": 10}', "code/inference.py": INFERENCE}))
    name = unique("tmodel")
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": "kobako/python-inference", "ModelDataUrl": f"s3://{bucket}/model/model.tar.gz"})
    return name


def _job(sm: Any, model: str, bucket: str, prefix: str, strategy: str,
         split: str = "Line") -> dict[str, Any]:
    name = unique("tj")
    sm.create_transform_job(
        TransformJobName=name, ModelName=model, BatchStrategy=strategy, MaxPayloadInMB=1,
        TransformInput={"DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{prefix}"}},
            "ContentType": "text/csv", "SplitType": split},
        TransformOutput={"S3OutputPath": f"s3://{bucket}/out/{name}", "Accept": "text/csv",
                         "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
    return _wait(sm, name)


def _read(s3: Any, bucket: str, key: str) -> str:
    return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def test_transform_multi_and_single_record(server: Server, s3: Any, bucket: str) -> None:
    sm = server.client("sagemaker")
    model = _model(sm, s3, bucket)
    s3.put_object(Bucket=bucket, Key="tin/a.csv", Body=b"1\n2\n3\n")
    s3.put_object(Bucket=bucket, Key="tin/sub/b.csv", Body=b"4\n\n5")
    job = _job(sm, model, bucket, "tin/", "MultiRecord")
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["TransformEndTime"] >= job["TransformStartTime"]
    name = job["TransformJobName"]
    assert _read(s3, bucket, f"out/{name}/a.csv.out") == \
        "10|3|text/csv\n20|3|text/csv\n30|3|text/csv\n"
    assert _read(s3, bucket, f"out/{name}/sub/b.csv.out") == "40|2|text/csv\n50|2|text/csv\n"

    single = _job(sm, model, bucket, "tin/a.csv", "SingleRecord")
    assert single["TransformJobStatus"] == "Completed", single.get("FailureReason")
    assert _read(s3, bucket, f"out/{single['TransformJobName']}/a.csv.out") == \
        "10|1|text/csv\n20|1|text/csv\n30|1|text/csv\n"

    whole = _job(sm, model, bucket, "tin/sub", "MultiRecord", split="None")
    assert _read(s3, bucket, f"out/{whole['TransformJobName']}/b.csv.out") == \
        "40|2|text/csv\n50|2|text/csv\n"

    logs = server.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TransformJobs",
                                        logStreamNamePrefix=f"{name}/")["logStreams"]
    assert streams
    listed = sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"]
    assert [(j["TransformJobName"], j["TransformJobStatus"]) for j in listed] == [
        (name, "Completed")]


def test_transform_model_error_fails_the_job(server: Server, s3: Any, bucket: str) -> None:
    sm = server.client("sagemaker")
    model = _model(sm, s3, bucket)
    s3.put_object(Bucket=bucket, Key="bad/a.csv", Body=b"1\nbad\n")
    job = _job(sm, model, bucket, "bad/", "SingleRecord")
    assert job["TransformJobStatus"] == "Failed"
    assert "cannot score bad" in job["FailureReason"]
    empty = _job(sm, model, bucket, "nothing-here/", "MultiRecord")
    assert empty["TransformJobStatus"] == "Failed"
    assert "No S3 objects found" in empty["FailureReason"]
