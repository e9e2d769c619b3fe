"""CreateTransformJob, DescribeTransformJob, ListTransformJobs, StopTransformJob."""

from __future__ import annotations

from typing import Any

from kobako.sagemaker import job_api
from kobako.sagemaker.common import arn, validation
from kobako.sagemaker.store import MODEL, Key, SageMakerStore
from kobako.sagemaker.transform import TransformRunner
from kobako.server.service import Handler, RequestContext

_ECHOED = ("ModelName", "MaxConcurrentTransforms", "ModelClientConfig", "MaxPayloadInMB",
           "BatchStrategy", "Environment", "TransformInput", "TransformOutput",
           "DataCaptureConfig", "TransformResources", "DataProcessing", "ExperimentConfig")
_SUMMARY = ("TransformJobName", "TransformJobArn", "CreationTime", "TransformEndTime",
            "LastModifiedTime", "TransformJobStatus", "FailureReason")


def build_handlers(store: SageMakerStore, runner: TransformRunner) -> dict[str, Handler]:
    def prepare(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        resources = params.get("TransformResources") or {}
        job_api.check_instance(resources.get("InstanceType"), "transformResources.instanceType")
        source = params.get("TransformInput") or {}
        s3 = (source.get("DataSource") or {}).get("S3DataSource") or {}
        job_api.check_s3(s3.get("S3Uri"))
        if s3.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise validation("kobako supports only the S3Prefix data type for transform input.")
        if (source.get("SplitType") or "None") not in ("None", "Line"):
            raise validation("kobako supports SplitType None and Line only.")
        job_api.check_s3((params.get("TransformOutput") or {}).get("S3OutputPath"))
        payload = params.get("MaxPayloadInMB")
        if payload is not None and not 0 <= int(payload) <= 100:
            raise validation("MaxPayloadInMB must be between 0 and 100.")
        processing = params.get("DataProcessing") or {}
        if processing.get("InputFilter", "$") != "$" or processing.get(
                "OutputFilter", "$") != "$" or processing.get("JoinSource", "None") != "None":
            raise validation("kobako does not support DataProcessing filters or JoinSource yet.")
        name = str(params.get("ModelName") or "")
        model = store.get(Key(MODEL, ctx.account_id, ctx.region, name))
        if model is None:
            raise validation(f'Could not find model '
                             f'"{arn(ctx.region, ctx.account_id, "model", name)}".')
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        return {"_Container": container}

    return job_api.build_handlers(store, runner, _ECHOED, prepare, _SUMMARY, "transform-job",
                                  "Descending")
