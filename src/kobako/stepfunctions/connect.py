"""Wire Step Functions' service integrations to the other services of the same server.

`connect(config, services)` runs once the app's services are built: it hands
Step Functions in-process access to Batch (`batch:submitJob(.sync)`), SageMaker
(`sagemaker:createTrainingJob(.sync)`, ...), S3 for the distributed Map, and to every
service reachable as `aws-sdk:SERVICE:action`. A service that is not served keeps
failing fast with States.Runtime naming the resource.
"""

from __future__ import annotations

from collections.abc import Sequence

from kobako.config import Config
from kobako.server.service import Service
from kobako.stepfunctions.batch_integration import BatchTasks
from kobako.stepfunctions.inprocess import Peer
from kobako.stepfunctions.s3_objects import S3Objects
from kobako.stepfunctions.sagemaker_integration import SageMakerTasks
from kobako.stepfunctions.sdk_integration import SdkTasks
from kobako.stepfunctions.service import StepFunctionsService

# aws-sdk name in the Resource ARN -> (kobako service name, botocore model, error prefix)
SDK_NAMES = {
    "s3": ("s3", "s3", "S3"),
    "batch": ("batch", "batch", "Batch"),
    "sfn": ("stepfunctions", "stepfunctions", "Sfn"),
    "sts": ("sts", "sts", "Sts"),
    "cloudwatchlogs": ("logs", "logs", "CloudWatchLogs"),
}


def connect(config: Config, services: Sequence[Service]) -> None:
    sfn = next((s for s in services if isinstance(s, StepFunctionsService)), None)
    if sfn is None:
        return
    by_name = {s.name: s for s in services}
    for sdk_name, (name, model, prefix) in SDK_NAMES.items():
        if name in by_name:
            SdkTasks(sdk_name, Peer(by_name[name], model, prefix, config.users)).register(
                sfn.integrations)
    if "s3" in by_name and sfn.map_runs is not None:  # distributed Map reader and writer
        sfn.map_runs.s3 = S3Objects(Peer(by_name["s3"], "s3", "S3", config.users))
    if "sagemaker" in by_name:
        SageMakerTasks(Peer(by_name["sagemaker"], "sagemaker", "SageMaker",
                            config.users)).register(sfn.integrations)
    if "batch" in by_name:
        BatchTasks(Peer(by_name["batch"], "batch", "Batch", config.users)).register(
            sfn.integrations)
