"""InvokeEndpointWithResponseStream against a real kobako server, read with boto3."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EventStreamError

from conftest import Server
from sagemaker_helpers import ROLE, tarball, unique, wait_endpoint

# Answers in three pieces; the second waits for the file named by "gate", so the test
# can tell that the first piece reached it while the model was still working.
STREAMING_PY = textwrap.dedent('''
    import json, os, time

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        if data.get("fail"):
            raise ValueError("the model refuses this input")

        def pieces():
            yield "first;"
            gate = data.get("gate")
            deadline = time.monotonic() + 30
            while gate and not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.02)
            # Without the gate in time, a relay that buffers the answer is found out.
            yield "second;" if not gate or os.path.exists(gate) else "gate-timeout;"
            if data.get("break"):
                raise RuntimeError("the model broke mid-stream")
            yield "third"
        return pieces()

    def output_fn(prediction, accept):
        return prediction, "text/plain"
''')


@pytest.fixture
def endpoint(server: Server, s3: Any, bucket: str) -> Any:
    """An endpoint with a streaming variant and a plain JSON (echo) one."""
    sm = server.client("sagemaker")
    s3.put_object(Bucket=bucket, Key="stream/model.tar.gz",
                  Body=tarball({"code/inference.py": STREAMING_PY}))
    s3.put_object(Bucket=bucket, Key="echo/model.tar.gz", Body=tarball({"weights": "x"}))
    name = unique("stream")
    for variant in ("stream", "echo"):
        sm.create_model(ModelName=f"{name}-{variant}", ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": "kobako/python-inference",
            "ModelDataUrl": f"s3://{bucket}/{variant}/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": variant, "ModelName": f"{name}-{variant}",
         "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1,
         "InitialVariantWeight": 1.0 if variant == "stream" else 0.0}
        for variant in ("stream", "echo")])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    try:
        described = wait_endpoint(sm, name)
        assert described["EndpointStatus"] == "InService", described.get("FailureReason")
        yield name
    finally:
        sm.delete_endpoint(EndpointName=name)


def _stream(rt: Any, endpoint: str, payload: Any, **kwargs: Any) -> Any:
    return rt.invoke_endpoint_with_response_stream(
        EndpointName=endpoint, ContentType="application/json", Body=json.dumps(payload),
        **kwargs)


def test_parts_arrive_as_the_model_produces_them(server: Server, endpoint: str,
                                                 tmp_path: Path) -> None:
    rt = server.client("sagemaker-runtime")
    gate = tmp_path / "gate"
    response = _stream(rt, endpoint, {"gate": str(gate)})
    assert response["ContentType"] == "text/plain"
    assert response["InvokedProductionVariant"] == "stream"
    events = iter(response["Body"])
    # The model cannot finish before the gate exists, and the gate is made only now:
    # a relay that waited for the whole answer would block here for 30 s, then fail.
    assert next(events) == {"PayloadPart": {"Bytes": b"first;"}}
    gate.touch()
    assert list(events) == [{"PayloadPart": {"Bytes": b"second;"}},
                            {"PayloadPart": {"Bytes": b"third"}}]

    # The same model through InvokeEndpoint: the pieces as one body.
    whole = rt.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                               Body=json.dumps({}), TargetVariant="stream")
    assert whole["Body"].read() == b"first;second;third"


def test_a_model_that_does_not_stream_answers_in_one_part(server: Server,
                                                          endpoint: str) -> None:
    rt = server.client("sagemaker-runtime")
    response = _stream(rt, endpoint, {"instances": [1, 2, 3]}, TargetVariant="echo")
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "echo"
    parts = list(response["Body"])
    assert len(parts) == 1
    assert json.loads(parts[0]["PayloadPart"]["Bytes"]) == {"instances": [1, 2, 3]}


def test_errors_before_and_during_the_stream(server: Server, endpoint: str) -> None:
    rt = server.client("sagemaker-runtime")
    with pytest.raises(ClientError) as error:
        _stream(rt, endpoint, {"fail": True}, TargetVariant="stream")
    assert error.value.response["Error"]["Code"] == "ModelError"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "the model refuses this input" in error.value.response["Error"]["Message"]

    response = _stream(rt, endpoint, {"break": True}, TargetVariant="stream")
    events = iter(response["Body"])
    assert next(events) == {"PayloadPart": {"Bytes": b"first;"}}
    assert next(events) == {"PayloadPart": {"Bytes": b"second;"}}
    with pytest.raises(EventStreamError) as broken:
        next(events)
    response["Body"].close()  # botocore leaves the connection open after a stream error
    assert broken.value.response["Error"]["Code"] == "ModelStreamError"
    # The endpoint still serves after a broken stream.
    assert [e["PayloadPart"]["Bytes"] for e in _stream(rt, endpoint, {})["Body"]] == [
        b"first;", b"second;", b"third"]

    for kwargs, code in [({"EndpointName": unique("missing")}, "ValidationError"),
                         ({"EndpointName": endpoint, "TargetVariant": "purple"},
                          "ValidationError")]:
        with pytest.raises(ClientError) as error:
            rt.invoke_endpoint_with_response_stream(Body=b"{}", **kwargs)
        assert error.value.response["Error"]["Code"] == code
