"""The SageMaker Python SDK 3.x round trip, unchanged, against kobako.

Run by tests/test_sagemaker_sdk.py with the python of a virtualenv that has `sagemaker>=3`
(sagemaker-train, sagemaker-serve, sagemaker-core). The environment points every boto3
client at kobako (AWS_ENDPOINT_URL); argv: bucket, work directory (with src/, data/), the
execution role's ARN (created through kobako's IAM first, as a user does on AWS: the SDK
checks it with iam:GetRole and iam:SimulatePrincipalPolicy).

ModelTrainer trains (SourceCode: the SDK's own sm_train.sh and drivers run under
/opt/ml), its model.tar.gz is fetched from S3 and unpacked, and ModelBuilder builds it
with an InferenceSpec for TorchServe (the SDK's inference.py and serve.pkl packed into a
new model.tar.gz, as the SDK's InferenceSpec example does), deploys it and invokes it.
Prints `RESULT {json}` last: what the test checks.
"""

import json
import logging
import os
import sys
import tarfile
from pathlib import Path

import boto3
from sagemaker.core import image_uris
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.s3 import S3Downloader
from sagemaker.serve.builder.schema_builder import SchemaBuilder
from sagemaker.serve.mode.function_pointers import Mode
from sagemaker.serve.model_builder import ModelBuilder
from sagemaker.serve.spec.inference_spec import InferenceSpec
from sagemaker.serve.utils.types import ModelServer
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData, SourceCode

REGION = "us-east-1"
INSTANCE = "ml.m5.large"


class Scaler(InferenceSpec):
    """Loads the trained weight; cloudpickled by value into serve.pkl (defined in
    __main__), so the endpoint needs nothing of this file."""

    def load(self, model_dir):
        with open(os.path.join(model_dir, "model.json")) as f:
            return json.load(f)

    def invoke(self, input_object, model):
        return [[x * model["weight"] for x in row] for row in input_object]


def main() -> None:
    bucket, work, role = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    logging.basicConfig(level=logging.INFO)  # train(logs=True) logs the job's lines
    session = Session(boto_session=boto3.Session(region_name=REGION), default_bucket=bucket)
    data = session.upload_data(path=str(work / "data"), bucket=bucket, key_prefix="data")
    trainer = ModelTrainer(
        training_image=image_uris.retrieve("sklearn", REGION, version="1.2-1",
                                           instance_type=INSTANCE),
        source_code=SourceCode(source_dir=str(work / "src"), entry_script="train.py"),
        compute=Compute(instance_type=INSTANCE, instance_count=1),
        hyperparameters={"scale": 3}, role=role, sagemaker_session=session,
        base_job_name="sdk3-train")
    trainer.train(input_data_config=[InputData(channel_name="train", data_source=data)],
                  wait=True, logs=True)
    job = trainer._latest_training_job  # the SDK's documented way to reach the job
    model_data = job.model_artifacts.s3_model_artifacts

    model_dir = work / "model"
    S3Downloader.download(model_data, str(work / "artifact"), sagemaker_session=session)
    with tarfile.open(work / "artifact" / "model.tar.gz") as archive:
        archive.extractall(model_dir, filter="data")
    builder = ModelBuilder(
        model_path=str(model_dir), inference_spec=Scaler(),
        schema_builder=SchemaBuilder([[1.0, 2.0]], [[7.5, 15.0]]),
        model_server=ModelServer.TORCHSERVE,
        image_uri=image_uris.retrieve("pytorch", REGION, version="2.1", py_version="py310",
                                      instance_type=INSTANCE, image_scope="inference"),
        # auto-capture runs a child python with an empty environment, which finds no
        # region here (it has only AWS_DEFAULT_REGION): the SDK's documented opt-out.
        dependencies={"auto": False},
        mode=Mode.SAGEMAKER_ENDPOINT, role_arn=role, sagemaker_session=session,
        instance_type=INSTANCE)
    model = builder.build()
    # wait=False, then a 1 s poll: deploy(wait=True) polls every 30 s.
    endpoint = builder.deploy(initial_instance_count=1, instance_type=INSTANCE, wait=False)
    endpoint.wait_for_status("InService", poll=1, timeout=240)
    try:
        reply = endpoint.invoke(body=json.dumps([[1.0, 2.0], [3.0, 4.0]]),
                                content_type="application/json", accept="application/json")
        answer = json.loads(reply.body.read())
    finally:
        endpoint.delete()
    described = session.sagemaker_client.describe_model(ModelName=model.model_name)
    print("\nRESULT", json.dumps({
        "job": job.training_job_name, "status": job.training_job_status,
        "model_data": model_data, "entrypoint": job.algorithm_specification.container_entrypoint,
        "container": described["PrimaryContainer"], "answer": answer}))


if __name__ == "__main__":
    main()
