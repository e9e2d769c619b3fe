"""The job operations: SubmitJob, DescribeJobs, ListJobs, TerminateJob, CancelJob, tags."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from kobako.batch.common import STATUSES, TERMINAL, client_error, loads
from kobako.batch.definitions import find_definition
from kobako.batch.engine import Engine
from kobako.batch.environments import find_queue
from kobako.batch.paging import offset_of, page_size, token_for
from kobako.batch.store import BatchStore, job_arn_of
from kobako.batch.submit import build_jobs, job_arn, task_arn
from kobako.server.service import Handler, RequestContext
from kobako.store.db import Row


def job_detail(store: BatchStore, row: Row, tags: dict[str, str] | None = None
               ) -> dict[str, Any]:
    """A job as DescribeJobs shows it; `tags` when the caller fetched them in bulk."""
    detail: dict[str, Any] = loads(row["detail"])
    attempts: list[dict[str, Any]] = loads(row["attempts"]) or []
    if "nodeProperties" in detail:
        return _multinode_detail(store, row, detail, attempts, tags)
    container = dict(detail["container"])
    container.pop("instanceType", None)
    is_parent = bool(row["array_size"]) and row["parent_id"] is None
    if attempts and not is_parent:
        last = attempts[-1]["container"]
        for key in ("exitCode", "reason", "logStreamName", "taskArn"):
            if key in last:
                container[key] = last[key]
    elif row["status"] in ("STARTING", "RUNNING") and not is_parent:
        container["logStreamName"] = f"{detail['jobDefinitionName']}/default/{row['job_id']}"
    for key in ("volumes", "environment", "mountPoints", "ulimits", "secrets",
                "networkInterfaces", "resourceRequirements"):
        container.setdefault(key, [])
    if row["gpu_ids"] and not is_parent:
        # The devices the latest attempt got (AWS reports none; kobako shows them as the
        # environment the job saw).
        ids = ",".join(loads(row["gpu_ids"]))
        container["environment"] = [
            *[e for e in container["environment"]
              if e.get("name") not in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")],
            {"name": "CUDA_VISIBLE_DEVICES", "value": ids},
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": ids}]
    out = _common_detail(store, row, detail, attempts, tags)
    out["container"] = container
    if detail.get("nodeDetails") is not None:
        out["nodeDetails"] = detail["nodeDetails"]
    if is_parent:
        summary = dict.fromkeys(STATUSES, 0)
        summary.update(store.children_summary(str(row["job_id"])))
        out["arrayProperties"] = {"statusSummary": summary, "size": row["array_size"]}
    elif row["array_index"] is not None:
        out["arrayProperties"] = {"index": row["array_index"]}
    return out


def _common_detail(store: BatchStore, row: Row, detail: dict[str, Any],
                   attempts: list[dict[str, Any]], tags: dict[str, str] | None
                   ) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobArn": job_arn(row),
        "jobName": row["name"],
        "jobId": row["job_id"],
        "jobQueue": row["queue_arn"],
        "status": row["status"],
        "attempts": attempts,
        "createdAt": row["created_at"],
        "dependsOn": detail.get("dependsOn") or [],
        "jobDefinition": row["def_arn"],
        "parameters": detail.get("parameters") or {},
        "tags": ({} if row["parent_id"] is not None else tags if tags is not None
                 else store.tags(job_arn(row))),
        "platformCapabilities": detail.get("platformCapabilities") or ["EC2"],
        "isCancelled": bool(row["cancelled"]),
        "isTerminated": bool(row["terminated"]),
    }
    for key, column in (("statusReason", "status_reason"), ("startedAt", "started_at"),
                        ("stoppedAt", "stopped_at")):
        if row[column] is not None:
            out[key] = row[column]
    for key in ("retryStrategy", "timeout", "propagateTags", "schedulingPriority",
                "shareIdentifier"):
        if detail.get(key) is not None:
            out[key] = detail[key]
    return out


def _multinode_detail(store: BatchStore, row: Row, detail: dict[str, Any],
                      attempts: list[dict[str, Any]], tags: dict[str, str] | None
                      ) -> dict[str, Any]:
    """A multi-node parent: its nodeProperties and no container (AWS shows the nodes'
    containers on the nodes, `<id>#<n>`); attempts, times and reason are the main node's."""
    out = _common_detail(store, row, detail, attempts, tags)
    out["nodeProperties"] = detail["nodeProperties"]
    return out


def job_summary(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobArn": job_arn(row),
        "jobId": row["job_id"],
        "jobName": row["name"],
        "createdAt": row["created_at"],
        "status": row["status"],
        "jobDefinition": row["def_arn"],
    }
    if row["share"] is not None:
        out["shareIdentifier"] = row["share"]
    for key, column in (("statusReason", "status_reason"), ("startedAt", "started_at"),
                        ("stoppedAt", "stopped_at")):
        if row[column] is not None:
            out[key] = row[column]
    attempts = loads(row["attempts"]) or []
    if attempts:
        last = attempts[-1]["container"]
        out["container"] = {k: last[k] for k in ("exitCode", "reason") if k in last}
    if row["array_size"] and row["parent_id"] is None:
        out["arrayProperties"] = {"size": row["array_size"]}
    elif row["array_index"] is not None:
        out["arrayProperties"] = {"index": row["array_index"]}
    elif row["node_index"] is not None:
        node = loads(row["detail"]).get("nodeDetails") or {}
        out["nodeProperties"] = {"isMainNode": bool(node.get("isMainNode")),
                                 "numNodes": row["num_nodes"],
                                 "nodeIndex": row["node_index"]}
    elif row["num_nodes"] is not None:
        out["nodeProperties"] = {"numNodes": row["num_nodes"]}
    return out


def _name_check(pattern: str) -> Callable[[Row], bool]:
    return lambda row: fnmatch.fnmatchcase(str(row["name"]), pattern)


def _definition_check(value: str) -> Callable[[Row], bool]:
    """An ARN, name:revision, or a name (any revision); `*` wildcards allowed."""
    pattern = value if value.startswith("arn:") or ":" in value else value + ":*"

    def check(row: Row) -> bool:
        arn = str(row["def_arn"])
        return fnmatch.fnmatchcase(arn, pattern) or fnmatch.fnmatchcase(
            arn.rsplit("/", 1)[-1], pattern)

    return check


def _list_filter(ctx: RequestContext, store: BatchStore, params: dict[str, Any]
                 ) -> tuple[str, list[Any], Callable[[Row], bool]]:
    where = ["account = ?", "region = ?"]
    args: list[Any] = [ctx.account_id, ctx.region]
    if params.get("arrayJobId"):
        where.append("parent_id = ? AND node_index IS NULL")
        args.append(params["arrayJobId"])
    elif params.get("multiNodeJobId"):
        where.append("parent_id = ? AND node_index IS NOT NULL")
        args.append(params["multiNodeJobId"])
    elif params.get("jobQueue"):
        queue = find_queue(store, ctx, str(params["jobQueue"]))
        if queue is None:
            raise client_error(f"Job queue {params['jobQueue']} does not exist")
        where.append("queue_arn = ? AND (parent_id IS NULL)")
        args.append(queue["arn"])
    else:
        raise client_error("Either jobQueue, arrayJobId or multiNodeJobId must be specified")
    checks: list[Callable[[Row], bool]] = []
    filters = params.get("filters") or []
    for item in filters:
        name, values = str(item.get("name", "")), [str(v) for v in item.get("values") or []]
        if not values:
            raise client_error(f"Filter {name} needs a value")
        value = values[0]
        if name == "JOB_NAME":
            checks.append(_name_check(value))
        elif name == "JOB_DEFINITION":
            checks.append(_definition_check(value))
        elif name == "BEFORE_CREATED_AT":
            where.append("created_at < ?")
            args.append(int(value))
        elif name == "AFTER_CREATED_AT":
            where.append("created_at > ?")
            args.append(int(value))
        else:
            raise client_error(f"Invalid filter name {name}")
    if not filters:
        status = str(params.get("jobStatus") or "RUNNING")
        if status not in STATUSES:
            raise client_error(f"Invalid jobStatus {status}")
        where.append("status = ?")
        args.append(status)
    return " AND ".join(where), args, lambda r: all(check(r) for check in checks)


def build_handlers(store: BatchStore, engine: Engine) -> dict[str, Handler]:
    async def submit_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue_ref = str(params.get("jobQueue") or "")
        queue = find_queue(store, ctx, queue_ref)
        if queue is None:
            raise client_error(f"Job queue {queue_ref} does not exist")
        if queue["state"] != "ENABLED":
            raise client_error(f"Job queue {queue['name']} is not ENABLED")
        def_ref = str(params.get("jobDefinition") or "")
        definition = find_definition(store, ctx, def_ref)
        if definition is None or definition["status"] != "ACTIVE":
            raise client_error(f"Job definition {def_ref} does not exist or is not ACTIVE")
        spec = loads(definition["spec"])
        jobs = build_jobs(store, ctx.account_id, ctx.region, queue, definition, spec, params)
        tags = params.get("tags") or {}
        task_tags: dict[str, dict[str, str]] = {}
        if params.get("propagateTags", spec.get("propagateTags")):
            # AWS puts the job's and the definition's tags (the job's win on a clash) on
            # the ECS task; kobako records them under each job's task ARN.
            merged = {**store.tags(str(definition["arn"])), **tags}
            task_tags = {task_arn(ctx.region, ctx.account_id, j.job_id): merged
                         for j in jobs if not (j.array_size and j.parent_id is None)
                         and not (j.num_nodes and j.node_index is None)}
        store.insert(jobs, tags, task_tags)
        engine.wake()
        first = jobs[0]
        return {"jobArn": job_arn_of(first), "jobName": first.name, "jobId": first.job_id}

    async def describe_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ids = [str(i) for i in params.get("jobs") or []]
        if len(ids) > 100:
            raise client_error("DescribeJobs accepts at most 100 job IDs")
        ids = [i.rsplit("/", 1)[-1] if i.startswith("arn:") else i for i in ids]
        rows = {str(r["job_id"]): r for r in store.jobs(ids)}
        tags = store.tags_many([job_arn(r) for r in rows.values()])
        return {"jobs": [job_detail(store, rows[i], tags.get(job_arn(rows[i]), {}))
                         for i in dict.fromkeys(ids) if i in rows]}

    async def list_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        where, args, keep = _list_filter(ctx, store, params)
        offset = offset_of(params.get("nextToken"))
        size = page_size(params.get("maxResults"), 100, 1000)
        rows = [r for r in store.list_jobs(where, args, 0, 1_000_000) if keep(r)]
        out: dict[str, Any] = {"jobSummaryList": [job_summary(r) for r in
                                                  rows[offset:offset + size]]}
        if offset + size < len(rows):
            out["nextToken"] = token_for(offset + size)
        return out

    async def stop(params: dict[str, Any], cancel: bool) -> dict[str, Any]:
        job_id = str(params.get("jobId") or "")
        reason = params.get("reason")
        if not reason:
            raise client_error("reason is required")
        row = store.job(job_id)
        if row is None:
            raise client_error(f"Job {job_id} does not exist")
        if row["node_index"] is not None:
            # A node stops with its whole multi-node job.
            job_id = str(row["parent_id"])
            row = store.job(job_id)
            assert row is not None
        ids = [job_id]
        if row["array_size"] and row["parent_id"] is None:
            ids += [str(c["job_id"]) for c in store.children(job_id)]
        elif row["num_nodes"] is not None:
            ids += [str(n["job_id"]) for n in store.nodes(job_id)]
        store.stop_waiting(ids, str(reason), cancel)
        if not cancel:
            rows = store.jobs(ids)
            await engine.terminate([str(r["job_id"]) for r in rows
                                    if r["status"] not in TERMINAL], str(reason))
        engine.wake()
        return {}

    async def terminate_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await stop(params, cancel=False)

    async def cancel_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await stop(params, cancel=True)

    def _resource(ctx: RequestContext, arn: str) -> str:
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[2] != "batch":
            raise client_error(f"Invalid resource ARN {arn}")
        kind, _, name = parts[5].partition("/")
        table = {"compute-environment": "batch_compute_envs", "job-queue": "batch_queues",
                 "job-definition": "batch_job_defs"}.get(kind)
        if kind == "job":
            found = store.job(name) is not None
        elif table is not None:
            found = store.db.one(f"SELECT 1 FROM {table} WHERE arn = ?", (arn,)) is not None
        else:
            found = False
        if not found:
            raise client_error(f"Resource {arn} does not exist")
        return arn

    def _tags_changed(arn: str) -> None:
        if ":compute-environment/" in arn:
            engine.changed()  # its kobako:runtime tags pick the runtime of new attempts

    async def tag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = _resource(ctx, str(params.get("resourceArn")))
        store.set_tags(arn, params.get("tags") or {})
        _tags_changed(arn)
        return {}

    async def untag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = _resource(ctx, str(params.get("resourceArn")))
        store.remove_tags(arn, params.get("tagKeys") or [])
        _tags_changed(arn)
        return {}

    async def list_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"tags": store.tags(_resource(ctx, str(params.get("resourceArn"))))}

    return {
        "SubmitJob": submit_job,
        "DescribeJobs": describe_jobs,
        "ListJobs": list_jobs,
        "TerminateJob": terminate_job,
        "CancelJob": cancel_job,
        "TagResource": tag_resource,
        "UntagResource": untag_resource,
        "ListTagsForResource": list_tags,
    }
