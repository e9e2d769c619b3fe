"""The SageMaker Python SDK 2.x round trip, unchanged, against kobako.

Run by tests/test_sagemaker_sdk.py with the python of a virtualenv that has `sagemaker<3`
(the SDK cannot share the test environment's pins). The environment points every boto3
client at kobako (AWS_ENDPOINT_URL); argv: bucket, work directory (with src/ and data/).
Prints `RESULT {json}` last: what the test checks (the SDK's waiters print
progress dots without newlines).
"""

import json
import sys
from pathlib import Path

import boto3
import numpy as np
import sagemaker
from sagemaker.sklearn import SKLearn

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"


def main() -> None:
    bucket, work = sys.argv[1], Path(sys.argv[2])
    session = sagemaker.Session(boto_session=boto3.Session(region_name="us-east-1"),
                                default_bucket=bucket)
    data = session.upload_data(path=str(work / "data"), bucket=bucket, key_prefix="data")
    estimator = SKLearn(entry_point="train.py", source_dir=str(work / "src"),
                        framework_version="1.2-1", py_version="py3", role=ROLE,
                        instance_type="ml.m5.large", instance_count=1,
                        hyperparameters={"scale": 3}, sagemaker_session=session,
                        base_job_name="sdk2-sklearn")
    estimator.fit({"train": data}, wait=True, logs="All")
    job = estimator.latest_training_job.describe()
    # wait=False, then the SDK's own waiter with a 1 s poll: deploy(wait=True) would poll
    # every 30 s, which only makes the test slow.
    predictor = estimator.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                                 wait=False)
    session.wait_for_endpoint(predictor.endpoint_name, poll=1)
    try:
        answer = predictor.predict(np.array([[1.0, 2.0], [3.0, 4.0]]))
    finally:
        predictor.delete_endpoint(delete_endpoint_config=True)
    print("\nRESULT", json.dumps({"job": job["TrainingJobName"], "status": job["TrainingJobStatus"],
                      "model_data": estimator.model_data, "image": job[
                          "AlgorithmSpecification"]["TrainingImage"],
                      "answer": np.asarray(answer).tolist()}))


if __name__ == "__main__":
    main()
