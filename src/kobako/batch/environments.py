"""Compute environments and job queues: where jobs may run, and in what order."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from kobako.batch.common import arn, check_name, client_error, dumps, loads, now_ms
from kobako.batch.paging import offset_of, page_size, token_for
from kobako.batch.store import BatchStore
from kobako.server.service import Handler, RequestContext
from kobako.store.db import Row

STATES = ("ENABLED", "DISABLED")


def _state(value: Any, default: str = "ENABLED") -> str:
    state = str(value or default)
    if state not in STATES:
        raise client_error(f"state must be one of ENABLED or DISABLED, got {state}")
    return state


def find_ce(store: BatchStore, ctx: RequestContext, ref: str) -> Row | None:
    return store.db.one(
        "SELECT * FROM batch_compute_envs WHERE arn = ? OR "
        "(account = ? AND region = ? AND name = ?)",
        (ref, ctx.account_id, ctx.region, ref))


def find_queue(store: BatchStore, ctx: RequestContext, ref: str) -> Row | None:
    return store.db.one(
        "SELECT * FROM batch_queues WHERE arn = ? OR (account = ? AND region = ? AND name = ?)",
        (ref, ctx.account_id, ctx.region, ref))


def _ce_out(store: BatchStore, row: Row) -> dict[str, Any]:
    spec = loads(row["spec"])
    out: dict[str, Any] = {
        "computeEnvironmentName": row["name"],
        "computeEnvironmentArn": row["arn"],
        "ecsClusterArn": spec["ecsClusterArn"],
        "type": spec["type"],
        "state": row["state"],
        "status": "VALID",
        "statusReason": "ComputeEnvironment Healthy",
        "tags": store.tags(str(row["arn"])),
        "uuid": spec["uuid"],
        "containerOrchestrationType": "ECS",
    }
    for key in ("computeResources", "serviceRole", "unmanagedvCpus"):
        if spec.get(key) is not None:
            out[key] = spec[key]
    return out


def _queue_out(store: BatchStore, row: Row) -> dict[str, Any]:
    spec = loads(row["spec"])
    out: dict[str, Any] = {
        "jobQueueName": row["name"],
        "jobQueueArn": row["arn"],
        "state": row["state"],
        "status": "VALID",
        "statusReason": "JobQueue Healthy",
        "priority": row["priority"],
        "computeEnvironmentOrder": spec["computeEnvironmentOrder"],
        "tags": store.tags(str(row["arn"])),
        "jobQueueType": "ECS",
    }
    if spec.get("schedulingPolicyArn"):
        out["schedulingPolicyArn"] = spec["schedulingPolicyArn"]
    return out


def _ce_order(store: BatchStore, ctx: RequestContext, raw: Any) -> list[dict[str, Any]]:
    if not raw:
        raise client_error("computeEnvironmentOrder is required")
    order = []
    for entry in raw:
        ce = find_ce(store, ctx, str(entry.get("computeEnvironment", "")))
        if ce is None:
            raise client_error(f"{entry.get('computeEnvironment')} does not exist")
        order.append({"order": int(entry.get("order", 0)), "computeEnvironment": ce["arn"]})
    if len({e["order"] for e in order}) != len(order):
        raise client_error("computeEnvironmentOrder must have unique order values")
    return sorted(order, key=lambda e: int(e["order"]))


def _check_policy(store: BatchStore, policy_arn: Any) -> None:
    if policy_arn and store.db.one("SELECT 1 FROM batch_sched_policies WHERE arn = ?",
                                   (str(policy_arn),)) is None:
        raise client_error(f"{policy_arn} does not exist")


def _describe(rows: list[Row], params: dict[str, Any], names_key: str) -> tuple[list[Row], str]:
    wanted = params.get(names_key)
    if wanted:
        rows = [r for r in rows if r["name"] in wanted or r["arn"] in wanted]
    offset = offset_of(params.get("nextToken"))
    size = page_size(params.get("maxResults"), 100, 100)
    page = rows[offset:offset + size]
    return page, token_for(offset + size) if offset + size < len(rows) else ""


def build_handlers(store: BatchStore, changed: Callable[[], None]) -> dict[str, Handler]:
    """`changed` runs after any change the scheduler must re-read (it caches them)."""
    db = store.db

    async def create_ce(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("computeEnvironmentName"), "computeEnvironment")
        kind = str(params.get("type") or "")
        if kind not in ("MANAGED", "UNMANAGED"):
            raise client_error("type must be MANAGED or UNMANAGED")
        resources = params.get("computeResources")
        max_vcpus: float | None = None
        if kind == "MANAGED":
            if not resources or resources.get("maxvCpus") is None:
                raise client_error("computeResources.maxvCpus must be specified for a MANAGED "
                                   "compute environment")
            max_vcpus = float(resources["maxvCpus"])
            if max_vcpus < 0:
                raise client_error("maxvCpus must be non-negative")
        elif params.get("unmanagedvCpus") is not None:
            max_vcpus = float(params["unmanagedvCpus"])
        state = _state(params.get("state"))
        ce_arn = arn(ctx.region, ctx.account_id, "compute-environment", name)
        ident = str(uuid.uuid4())
        spec = {
            "type": kind,
            "computeResources": resources,
            "serviceRole": params.get("serviceRole"),
            "unmanagedvCpus": params.get("unmanagedvCpus"),
            "uuid": ident,
            "ecsClusterArn": f"arn:aws:ecs:{ctx.region}:{ctx.account_id}:cluster/"
                             f"{name}_Batch_{ident}",
        }
        with db.transaction():
            if find_ce(store, ctx, name) is not None:
                raise client_error("Object already exists")
            db.execute(
                "INSERT INTO batch_compute_envs (arn, account, region, name, state, max_vcpus, "
                "spec, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ce_arn, ctx.account_id, ctx.region, name, state, max_vcpus, dumps(spec),
                 now_ms()))
            store.set_tags(ce_arn, params.get("tags") or {})
        changed()
        return {"computeEnvironmentName": name, "computeEnvironmentArn": ce_arn}

    async def describe_ces(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = db.query("SELECT * FROM batch_compute_envs WHERE account = ? AND region = ? "
                        "ORDER BY created, name", (ctx.account_id, ctx.region))
        page, token = _describe(rows, params, "computeEnvironments")
        out: dict[str, Any] = {"computeEnvironments": [_ce_out(store, r) for r in page]}
        if token:
            out["nextToken"] = token
        return out

    async def update_ce(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = str(params.get("computeEnvironment") or "")
        with db.transaction():
            row = find_ce(store, ctx, ref)
            if row is None:
                raise client_error(f"{ref} does not exist")
            spec = loads(row["spec"])
            state = _state(params.get("state"), str(row["state"]))
            max_vcpus = row["max_vcpus"]
            update = params.get("computeResources")
            if update:
                if spec["type"] != "MANAGED":
                    raise client_error("computeResources can only be updated for a MANAGED "
                                       "compute environment")
                spec["computeResources"] = {**(spec.get("computeResources") or {}), **update}
                max_vcpus = float(spec["computeResources"]["maxvCpus"])
            if params.get("unmanagedvCpus") is not None:
                spec["unmanagedvCpus"] = params["unmanagedvCpus"]
                max_vcpus = float(params["unmanagedvCpus"])
            if params.get("serviceRole"):
                spec["serviceRole"] = params["serviceRole"]
            db.execute("UPDATE batch_compute_envs SET state = ?, max_vcpus = ?, spec = ? "
                       "WHERE arn = ?", (state, max_vcpus, dumps(spec), row["arn"]))
        changed()
        return {"computeEnvironmentName": row["name"], "computeEnvironmentArn": row["arn"]}

    async def delete_ce(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = str(params.get("computeEnvironment") or "")
        with db.transaction():
            row = find_ce(store, ctx, ref)
            if row is None:
                raise client_error(f"{ref} does not exist")
            for queue in db.query("SELECT ce_order FROM batch_queues"):
                if row["arn"] in loads(queue["ce_order"]):
                    raise client_error("Cannot delete, found existing JobQueue relationship")
            if row["state"] != "DISABLED":
                raise client_error("Cannot delete, compute environment must be DISABLED first")
            db.execute("DELETE FROM batch_compute_envs WHERE arn = ?", (row["arn"],))
            db.execute("DELETE FROM batch_tags WHERE arn = ?", (row["arn"],))
        changed()
        return {}

    async def create_queue(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("jobQueueName"), "jobQueue")
        if params.get("priority") is None:
            raise client_error("priority is required")
        order = _ce_order(store, ctx, params.get("computeEnvironmentOrder"))
        _check_policy(store, params.get("schedulingPolicyArn"))
        queue_arn = arn(ctx.region, ctx.account_id, "job-queue", name)
        spec = {"computeEnvironmentOrder": order,
                "schedulingPolicyArn": params.get("schedulingPolicyArn")}
        with db.transaction():
            if find_queue(store, ctx, name) is not None:
                raise client_error("Object already exists")
            db.execute(
                "INSERT INTO batch_queues (arn, account, region, name, state, priority, "
                "ce_order, spec, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (queue_arn, ctx.account_id, ctx.region, name, _state(params.get("state")),
                 int(params["priority"]), dumps([e["computeEnvironment"] for e in order]),
                 dumps(spec), now_ms()))
            store.set_tags(queue_arn, params.get("tags") or {})
        changed()
        return {"jobQueueName": name, "jobQueueArn": queue_arn}

    async def describe_queues(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = db.query("SELECT * FROM batch_queues WHERE account = ? AND region = ? "
                        "ORDER BY created, name", (ctx.account_id, ctx.region))
        page, token = _describe(rows, params, "jobQueues")
        out: dict[str, Any] = {"jobQueues": [_queue_out(store, r) for r in page]}
        if token:
            out["nextToken"] = token
        return out

    async def update_queue(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = str(params.get("jobQueue") or "")
        with db.transaction():
            row = find_queue(store, ctx, ref)
            if row is None:
                raise client_error(f"{ref} does not exist")
            spec = loads(row["spec"])
            order_arns = loads(row["ce_order"])
            if params.get("computeEnvironmentOrder"):
                spec["computeEnvironmentOrder"] = _ce_order(
                    store, ctx, params["computeEnvironmentOrder"])
                order_arns = [e["computeEnvironment"] for e in spec["computeEnvironmentOrder"]]
            priority = params.get("priority", row["priority"])
            if params.get("schedulingPolicyArn"):
                if not spec.get("schedulingPolicyArn"):
                    raise client_error("A scheduling policy can only be set on a job queue "
                                       "created with one (a FIFO queue stays FIFO)")
                _check_policy(store, params["schedulingPolicyArn"])
                spec["schedulingPolicyArn"] = params["schedulingPolicyArn"]
            db.execute(
                "UPDATE batch_queues SET state = ?, priority = ?, ce_order = ?, spec = ? "
                "WHERE arn = ?",
                (_state(params.get("state"), str(row["state"])), int(priority),
                 dumps(order_arns), dumps(spec), row["arn"]))
        changed()
        return {"jobQueueName": row["name"], "jobQueueArn": row["arn"]}

    async def delete_queue(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = str(params.get("jobQueue") or "")
        row = find_queue(store, ctx, ref)
        if row is None:
            raise client_error(f"{ref} does not exist")
        waiting = db.query("SELECT job_id FROM batch_jobs WHERE queue_arn = ? AND status IN "
                           "('SUBMITTED', 'PENDING', 'RUNNABLE')", (row["arn"],))
        store.stop_waiting([str(w["job_id"]) for w in waiting], "Job queue deleted", False)
        with db.transaction():
            db.execute("DELETE FROM batch_queues WHERE arn = ?", (row["arn"],))
            db.execute("DELETE FROM batch_tags WHERE arn = ?", (row["arn"],))
        changed()
        return {}

    return {
        "CreateComputeEnvironment": create_ce,
        "DescribeComputeEnvironments": describe_ces,
        "UpdateComputeEnvironment": update_ce,
        "DeleteComputeEnvironment": delete_ce,
        "CreateJobQueue": create_queue,
        "DescribeJobQueues": describe_queues,
        "UpdateJobQueue": update_queue,
        "DeleteJobQueue": delete_queue,
    }
