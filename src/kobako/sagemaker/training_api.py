"""CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs, StopTrainingJob."""

from __future__ import annotations

from typing import Any

from kobako.sagemaker import job_api
from kobako.sagemaker.common import split_s3, validation
from kobako.sagemaker.store import SageMakerStore
from kobako.sagemaker.training import TrainingRunner
from kobako.server.service import Handler, RequestContext

# Request members copied into the describe document as given.
_ECHOED = ("HyperParameters", "AlgorithmSpecification", "RoleArn", "InputDataConfig",
           "OutputDataConfig", "ResourceConfig", "VpcConfig", "StoppingCondition",
           "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption",
           "EnableManagedSpotTraining", "CheckpointConfig", "DebugHookConfig",
           "ExperimentConfig", "Environment", "RetryStrategy", "TensorBoardOutputConfig",
           "ProfilerConfig", "DebugRuleConfigurations", "ProfilerRuleConfigurations")
_SUMMARY = ("TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingEndTime",
            "LastModifiedTime", "TrainingJobStatus", "SecondaryStatus")


def _validate(params: dict[str, Any]) -> None:
    algorithm = params.get("AlgorithmSpecification") or {}
    if not algorithm.get("TrainingImage") and not algorithm.get("AlgorithmName"):
        raise validation("You must specify either AlgorithmName or TrainingImage in "
                         "AlgorithmSpecification.")
    modes = [algorithm.get("TrainingInputMode")] + [
        c.get("InputMode") for c in params.get("InputDataConfig") or []]
    if "Pipe" in modes:
        raise validation("kobako does not support the Pipe input mode yet; use File or "
                         "FastFile (FastFile is staged like File).")
    resource = params.get("ResourceConfig") or {}
    job_api.check_instance(str(resource.get("InstanceType") or ""),
                           "resourceConfig.instanceType")
    output = params.get("OutputDataConfig") or {}
    split_s3(str(output.get("S3OutputPath") or ""))
    names = [c.get("ChannelName") for c in params.get("InputDataConfig") or []]
    if len(set(names)) != len(names):
        raise validation("Channel names must be unique.")
    for channel in params.get("InputDataConfig") or []:
        uri = ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
        if uri is not None:
            split_s3(str(uri))
    stopping = params.get("StoppingCondition") or {}
    seconds = stopping.get("MaxRuntimeInSeconds")
    if seconds is not None and int(seconds) < 1:
        raise validation("MaxRuntimeInSeconds must be at least 1.")


def _prepare(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Validate; the describe document's AlgorithmSpecification and StoppingCondition
    carry AWS's defaults (File input, one day)."""
    _validate(params)
    algorithm = dict(params["AlgorithmSpecification"])
    algorithm.setdefault("TrainingInputMode", "File")
    return {"AlgorithmSpecification": algorithm,
            "StoppingCondition": params.get("StoppingCondition") or {
                "MaxRuntimeInSeconds": 86400}}


def build_handlers(store: SageMakerStore, runner: TrainingRunner) -> dict[str, Handler]:
    return job_api.build_handlers(
        store, runner, _ECHOED, _prepare, _SUMMARY, "training-job", "Ascending",
        duplicate="Training job names must be unique within an AWS account and region, and "
                  "a training job with this name already exists ({arn})",
        missing="Requested resource not found.")
