"""Create/Describe/List/Stop for SageMaker's job kinds (training, processing,
transform): one shape, three nouns.

Validation messages and error codes are AWS's (ValidationException, ResourceInUse,
ResourceNotFound from the botocore `sagemaker` model).
"""

from __future__ import annotations

from collections.abc import Callable
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
from kobako.sagemaker.jobs import Runner
from kobako.sagemaker.store import Key, SageMakerStore
from kobako.server.service import Handler, RequestContext

Prepare = Callable[[RequestContext, dict[str, Any]], dict[str, Any]]


def check_instance(instance_type: Any, where: str) -> None:
    if lookup(str(instance_type or "")) is None:
        raise validation(f"1 validation error detected: Value '{instance_type}' at '{where}' "
                         "failed to satisfy constraint: Member must satisfy enum value set")


def check_s3(uri: Any) -> None:
    split_s3(str(uri or ""))


def build_handlers(store: SageMakerStore, runner: Runner[Any], echoed: tuple[str, ...],
                   prepare: Prepare, summary_keys: tuple[str, ...],
                   arn_kind: str, default_order: str,
                   duplicate: str = "Job name must be unique within an AWS account and "
                                    "region, and a job with this name already exists ({arn})",
                   missing: str = "Could not find requested job with name {name}",
                   ) -> dict[str, Handler]:
    """`prepare` validates a create request and returns extra fields (private `_` ones,
    or echoed ones completed with defaults); `duplicate` and `missing` are the
    ResourceInUse and ResourceNotFound messages."""
    noun = runner.noun
    name_key, status_key, arn_key = f"{noun}JobName", runner.status_key, runner.arn_key
    lower = noun[0].lower() + noun[1:]

    def key(ctx: RequestContext, name: Any) -> Key:
        return Key(runner.kind, ctx.account_id, ctx.region, str(name or ""))

    async def create(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get(name_key), f"{lower}JobName")
        extra = prepare(ctx, params)
        job_arn = arn(ctx.region, ctx.account_id, arn_kind, name)
        stamp = now()
        detail: dict[str, Any] = {k: params[k] for k in echoed if params.get(k) is not None}
        detail.update(extra)
        detail.update({name_key: name, arn_key: job_arn, status_key: "InProgress",
                       "CreationTime": stamp, "LastModifiedTime": stamp})
        runner.created(detail)
        job_key = key(ctx, name)
        if not store.insert(job_key, detail, "InProgress"):
            raise in_use(duplicate.format(arn=job_arn))
        runner.submit(job_key, detail)
        return {arn_key: job_arn}

    async def describe(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        detail = runner.describe(key(ctx, params.get(name_key)))
        if detail is None:
            raise not_found(missing.format(name=params.get(name_key)))
        return detail

    async def list_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        items = store.all(runner.kind, ctx.account_id, ctx.region)
        chosen = filter_sort(items, params, name_key=name_key, status_key=status_key,
                             default_order=default_order)
        return page(chosen, params, f"{noun}JobSummaries",
                    lambda d: {k: d[k] for k in summary_keys if k in d})

    async def stop(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        job_key = key(ctx, params.get(name_key))
        detail = store.get(job_key)
        if detail is None:
            raise not_found(missing.format(name=params.get(name_key)))
        if detail[status_key] not in ("InProgress", "Stopping"):
            raise validation(f"The request was rejected because the {lower} job is in status "
                             f"{detail[status_key]}.")
        await runner.request_stop(job_key)
        return {}

    return {f"Create{noun}Job": create, f"Describe{noun}Job": describe,
            f"List{noun}Jobs": list_jobs, f"Stop{noun}Job": stop}
