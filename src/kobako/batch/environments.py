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


# The two kinds this module serves, by the word AWS builds their field names from
# (`computeEnvironmentName`, `jobQueueArn`, `computeEnvironments`, ...), and their tables.
CE = "computeEnvironment"
QUEUE = "jobQueue"
_TABLES = {CE: "batch_compute_envs", QUEUE: "batch_queues"}


def _find(store: BatchStore, ctx: RequestContext, kind: str, ref: str) -> Row | None:
    """A CE or queue by ARN, or by name in the caller's account and region."""
    return store.db.one(
        f"SELECT * FROM {_TABLES[kind]} WHERE arn = ? OR "
        "(account = ? AND region = ? AND name = ?)",
        (ref, ctx.account_id, ctx.region, ref))


def find_ce(store: BatchStore, ctx: RequestContext, ref: str) -> Row | None:
    return _find(store, ctx, CE, ref)


def find_queue(store: BatchStore, ctx: RequestContext, ref: str) -> Row | None:
    return _find(store, ctx, QUEUE, ref)


def _existing(store: BatchStore, ctx: RequestContext, kind: str, params: dict[str, Any]
              ) -> Row:
    """The row the request's `computeEnvironment` / `jobQueue` field names, else AWS's
    ClientException."""
    ref = str(params.get(kind) or "")
    row = _find(store, ctx, kind, ref)
    if row is None:
        raise client_error(f"{ref} does not exist")
    return row


def _named(kind: str, name: Any, kind_arn: Any) -> dict[str, Any]:
    """What Create and Update answer: the name and ARN, under the kind's field names."""
    return {f"{kind}Name": name, f"{kind}Arn": kind_arn}


def _create(store: BatchStore, ctx: RequestContext, kind: str, name: str, kind_arn: str,
            columns: Callable[[], dict[str, Any]], tags: dict[str, str],
            changed: Callable[[], None]) -> dict[str, Any]:
    """Insert a new CE or queue with its tags, and answer its name and ARN. `columns` (the
    kind's own ones) is built only once the name is known to be free, so a taken name is
    reported before any error building them raises."""
    with store.db.transaction():
        if _find(store, ctx, kind, name) is not None:
            raise client_error("Object already exists")
        values = {"arn": kind_arn, "account": ctx.account_id, "region": ctx.region,
                  "name": name, **columns(), "created": now_ms()}
        store.db.execute(
            f"INSERT INTO {_TABLES[kind]} ({', '.join(values)}) "
            f"VALUES ({', '.join('?' * len(values))})", tuple(values.values()))
        store.set_tags(kind_arn, tags)
    changed()
    return _named(kind, name, kind_arn)


def _remove(store: BatchStore, kind: str, row: Row) -> None:
    """Delete a CE or queue and its tags, in the caller's transaction."""
    store.db.execute(f"DELETE FROM {_TABLES[kind]} WHERE arn = ?", (row["arn"],))
    store.db.execute("DELETE FROM batch_tags WHERE arn = ?", (row["arn"],))


def _described(store: BatchStore, kind: str, row: Row, healthy: str) -> dict[str, Any]:
    """The fields a described CE and queue share: kobako's are always VALID (there is no
    infrastructure to provision), with AWS's healthy reason."""
    return {**_named(kind, row["name"], row["arn"]), "state": row["state"], "status": "VALID",
            "statusReason": f"{healthy} Healthy", "tags": store.tags(str(row["arn"]))}


def _ce_out(store: BatchStore, row: Row) -> dict[str, Any]:
    spec = loads(row["spec"])
    out = _described(store, CE, row, "ComputeEnvironment")
    out.update({"ecsClusterArn": spec["ecsClusterArn"], "type": spec["type"],
                "uuid": spec["uuid"], "containerOrchestrationType": "ECS"})
    for key in ("computeResources", "serviceRole", "unmanagedvCpus"):
        if spec.get(key) is not None:
            out[key] = spec[key]
    return out


def _queue_out(store: BatchStore, row: Row) -> dict[str, Any]:
    spec = loads(row["spec"])
    out = _described(store, QUEUE, row, "JobQueue")
    out.update({"priority": row["priority"],
                "computeEnvironmentOrder": spec["computeEnvironmentOrder"],
                "jobQueueType": "ECS"})
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


def _describer(store: BatchStore, kind: str, out: Callable[[BatchStore, Row], dict[str, Any]]
               ) -> Handler:
    """DescribeComputeEnvironments / DescribeJobQueues: those the request names
    (`computeEnvironments` / `jobQueues`, by name or ARN), else all, oldest first, a page
    at a time."""
    listed = f"{kind}s"

    async def describe(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = store.db.query(f"SELECT * FROM {_TABLES[kind]} WHERE account = ? AND "
                              "region = ? ORDER BY created, name", (ctx.account_id, ctx.region))
        wanted = params.get(listed)
        if wanted:
            rows = [r for r in rows if r["name"] in wanted or r["arn"] in wanted]
        offset = offset_of(params.get("nextToken"))
        size = page_size(params.get("maxResults"), 100, 100)
        answer: dict[str, Any] = {listed: [out(store, r) for r in rows[offset:offset + size]]}
        if offset + size < len(rows):
            answer["nextToken"] = token_for(offset + size)
        return answer

    return describe


def build_handlers(store: BatchStore, changed: Callable[[], None]) -> dict[str, Handler]:
    """`changed` runs after any change the scheduler must re-read (it caches them)."""
    db = store.db

    async def create_ce(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("computeEnvironmentName"), CE)
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
        return _create(store, ctx, CE, name, ce_arn,
                       lambda: {"state": state, "max_vcpus": max_vcpus, "spec": dumps(spec)},
                       params.get("tags") or {}, changed)

    async def update_ce(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        with db.transaction():
            row = _existing(store, ctx, CE, params)
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
        return _named(CE, row["name"], row["arn"])

    async def delete_ce(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        with db.transaction():
            row = _existing(store, ctx, CE, params)
            for queue in db.query("SELECT ce_order FROM batch_queues"):
                if row["arn"] in loads(queue["ce_order"]):
                    raise client_error("Cannot delete, found existing JobQueue relationship")
            if row["state"] != "DISABLED":
                raise client_error("Cannot delete, compute environment must be DISABLED first")
            _remove(store, CE, row)
        changed()
        return {}

    async def create_queue(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("jobQueueName"), QUEUE)
        if params.get("priority") is None:
            raise client_error("priority is required")
        order = _ce_order(store, ctx, params.get("computeEnvironmentOrder"))
        _check_policy(store, params.get("schedulingPolicyArn"))
        queue_arn = arn(ctx.region, ctx.account_id, "job-queue", name)
        spec = {"computeEnvironmentOrder": order,
                "schedulingPolicyArn": params.get("schedulingPolicyArn")}
        return _create(store, ctx, QUEUE, name, queue_arn,
                       lambda: {"state": _state(params.get("state")),
                                "priority": int(params["priority"]),
                                "ce_order": dumps([e["computeEnvironment"] for e in order]),
                                "spec": dumps(spec)},
                       params.get("tags") or {}, changed)

    async def update_queue(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        with db.transaction():
            row = _existing(store, ctx, QUEUE, params)
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
        return _named(QUEUE, row["name"], row["arn"])

    async def delete_queue(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        row = _existing(store, ctx, QUEUE, params)
        waiting = db.query("SELECT job_id FROM batch_jobs WHERE queue_arn = ? AND status IN "
                           "('SUBMITTED', 'PENDING', 'RUNNABLE')", (row["arn"],))
        store.stop_waiting([str(w["job_id"]) for w in waiting], "Job queue deleted", False)
        with db.transaction():
            _remove(store, QUEUE, row)
        changed()
        return {}

    return {
        "CreateComputeEnvironment": create_ce,
        "DescribeComputeEnvironments": _describer(store, CE, _ce_out),
        "UpdateComputeEnvironment": update_ce,
        "DeleteComputeEnvironment": delete_ce,
        "CreateJobQueue": create_queue,
        "DescribeJobQueues": _describer(store, QUEUE, _queue_out),
        "UpdateJobQueue": update_queue,
        "DeleteJobQueue": delete_queue,
    }
