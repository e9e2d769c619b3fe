"""CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs, StopTrainingJob."""

from __future__ import annotations

from typing import Any

from kobako.sagemaker.common import (
    arn,
    check_name,
    filter_sort,
    in_use,
    not_found,
    now,
    page,
    split_s3,
    validation,
)
from kobako.sagemaker.instances import lookup
from kobako.sagemaker.store import TRAINING, Key, SageMakerStore
from kobako.sagemaker.training import TrainingRunner, transition
from kobako.server.service import Handler, RequestContext

# Request members copied into the describe document as given.
_ECHOED = ("HyperParameters", "AlgorithmSpecification", "RoleArn", "InputDataConfig",
           "OutputDataConfig", "ResourceConfig", "VpcConfig", "StoppingCondition",
           "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption",
           "EnableManagedSpotTraining", "CheckpointConfig", "DebugHookConfig",
           "ExperimentConfig", "Environment", "RetryStrategy", "TensorBoardOutputConfig",
           "ProfilerConfig", "DebugRuleConfigurations", "ProfilerRuleConfigurations")


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
    instance_type = str(resource.get("InstanceType") or "")
    if lookup(instance_type) is None:
        raise validation(f"1 validation error detected: Value '{instance_type}' at "
                         "'resourceConfig.instanceType' failed to satisfy constraint: Member "
                         "must satisfy enum value set")
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


def _summary(detail: dict[str, Any]) -> dict[str, Any]:
    keys = ("TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingEndTime",
            "LastModifiedTime", "TrainingJobStatus", "SecondaryStatus")
    return {k: detail[k] for k in keys if k in detail}


def build_handlers(store: SageMakerStore, runner: TrainingRunner) -> dict[str, Handler]:
    def key(ctx: RequestContext, name: Any) -> Key:
        return Key(TRAINING, ctx.account_id, ctx.region, str(name or ""))

    async def create_training_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("TrainingJobName"), "trainingJobName")
        _validate(params)
        job_arn = arn(ctx.region, ctx.account_id, "training-job", name)
        stamp = now()
        detail: dict[str, Any] = {k: params[k] for k in _ECHOED if params.get(k) is not None}
        detail["AlgorithmSpecification"].setdefault("TrainingInputMode", "File")
        detail["StoppingCondition"] = params.get("StoppingCondition") or {
            "MaxRuntimeInSeconds": 86400}
        detail.update({"TrainingJobName": name, "TrainingJobArn": job_arn,
                       "TrainingJobStatus": "InProgress", "CreationTime": stamp,
                       "LastModifiedTime": stamp})
        transition(detail, "Starting", "Launching requested ML instances")
        job_key = key(ctx, name)
        if not store.insert(job_key, detail, "InProgress"):
            raise in_use("Training job names must be unique within an AWS account and region, "
                         f"and a training job with this name already exists ({job_arn})")
        runner.submit(job_key, detail)
        return {"TrainingJobArn": job_arn}

    async def describe_training_job(ctx: RequestContext, params: dict[str, Any]
                                    ) -> dict[str, Any]:
        job_key = key(ctx, params.get("TrainingJobName"))
        run = runner.runs.get(job_key)
        detail = run.detail if run is not None else store.get(job_key)
        if detail is None:
            raise not_found()
        return dict(detail)

    async def list_training_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        items = store.all(TRAINING, ctx.account_id, ctx.region)
        chosen = filter_sort(items, params, name_key="TrainingJobName",
                             status_key="TrainingJobStatus", default_order="Ascending")
        return page(chosen, params, "TrainingJobSummaries", _summary)

    async def stop_training_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        job_key = key(ctx, params.get("TrainingJobName"))
        detail = store.get(job_key)
        if detail is None:
            raise not_found()
        if detail["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            raise validation("The request was rejected because the training job is in status "
                             f"{detail['TrainingJobStatus']}.")
        await runner.request_stop(job_key)
        return {}

    return {
        "CreateTrainingJob": create_training_job,
        "DescribeTrainingJob": describe_training_job,
        "ListTrainingJobs": list_training_jobs,
        "StopTrainingJob": stop_training_job,
    }
