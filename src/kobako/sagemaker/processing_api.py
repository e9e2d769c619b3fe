"""CreateProcessingJob, DescribeProcessingJob, ListProcessingJobs, StopProcessingJob."""

from __future__ import annotations

from typing import Any

from kobako.sagemaker import job_api
from kobako.sagemaker.common import validation
from kobako.sagemaker.processing import ProcessingRunner
from kobako.sagemaker.store import SageMakerStore
from kobako.server.service import Handler, RequestContext

_ECHOED = ("ProcessingInputs", "ProcessingOutputConfig", "ProcessingResources",
           "StoppingCondition", "AppSpecification", "Environment", "NetworkConfig", "RoleArn",
           "ExperimentConfig")
_SUMMARY = ("ProcessingJobName", "ProcessingJobArn", "CreationTime", "ProcessingEndTime",
            "LastModifiedTime", "ProcessingJobStatus", "FailureReason", "ExitMessage")


def _prepare(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster = (params.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    job_api.check_instance(cluster.get("InstanceType"),
                           "processingResources.clusterConfig.instanceType")
    if not (params.get("AppSpecification") or {}).get("ImageUri"):
        raise validation("AppSpecification.ImageUri is required.")
    names = [i.get("InputName") for i in params.get("ProcessingInputs") or []]
    outputs = (params.get("ProcessingOutputConfig") or {}).get("Outputs") or []
    names += [o.get("OutputName") for o in outputs]
    if len(set(names)) != len(names):
        raise validation("Input and output names must be unique within a processing job.")
    for item in params.get("ProcessingInputs") or []:
        source = item.get("S3Input")
        if not source:
            raise validation(f"Input {item.get('InputName')}: kobako supports only S3Input "
                             "processing inputs.")
        job_api.check_s3(source.get("S3Uri"))
        if source.get("S3InputMode") == "Pipe":
            raise validation("kobako does not support the Pipe input mode yet; use File.")
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise validation("kobako supports only the S3Prefix data type.")
    for output in outputs:
        target = output.get("S3Output")
        if not target:
            raise validation(f"Output {output.get('OutputName')}: kobako supports only "
                             "S3Output processing outputs.")
        job_api.check_s3(target.get("S3Uri"))
    seconds = (params.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    if seconds is not None and int(seconds) < 1:
        raise validation("MaxRuntimeInSeconds must be at least 1.")
    return {}


def build_handlers(store: SageMakerStore, runner: ProcessingRunner) -> dict[str, Handler]:
    return job_api.build_handlers(store, runner, _ECHOED, _prepare, _SUMMARY,
                                  "processing-job", "Ascending")
