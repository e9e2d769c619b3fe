"""Job definitions: named, revisioned templates that SubmitJob fills in."""

from __future__ import annotations

from typing import Any

from kobako.batch.common import arn, check_name, client_error, dumps, loads
from kobako.batch.multinode import check_node_properties
from kobako.batch.paging import offset_of, page_size, token_for
from kobako.batch.store import BatchStore
from kobako.server.service import Handler, RequestContext
from kobako.store.db import Row


def validate_retry(strategy: Any) -> None:
    if not strategy:
        return
    attempts = strategy.get("attempts")
    if attempts is not None and not 1 <= int(attempts) <= 10:
        raise client_error("Error executing request, Exception : Retry strategy attempts "
                           "must be between 1 and 10.")
    for rule in strategy.get("evaluateOnExit") or []:
        if str(rule.get("action", "")).upper() not in ("RETRY", "EXIT"):
            raise client_error("evaluateOnExit action must be RETRY or EXIT")


def validate_timeout(timeout: Any) -> None:
    # AWS's minimum is 60 seconds; kobako accepts any positive value so short
    # timeouts can be exercised locally.
    if timeout and timeout.get("attemptDurationSeconds") is not None \
            and int(timeout["attemptDurationSeconds"]) < 1:
        raise client_error("timeout.attemptDurationSeconds must be at least 1")


def find_definition(store: BatchStore, ctx: RequestContext, ref: str) -> Row | None:
    """By ARN, name:revision, or name (latest ACTIVE revision)."""
    if ref.startswith("arn:"):
        return store.db.one("SELECT * FROM batch_job_defs WHERE arn = ?", (ref,))
    name, _, revision = ref.partition(":")
    if revision:
        if not revision.isdigit():
            return None
        return store.db.one(
            "SELECT * FROM batch_job_defs WHERE account = ? AND region = ? AND name = ? "
            "AND revision = ?", (ctx.account_id, ctx.region, name, int(revision)))
    return store.db.one(
        "SELECT * FROM batch_job_defs WHERE account = ? AND region = ? AND name = ? "
        "AND status = 'ACTIVE' ORDER BY revision DESC LIMIT 1", (ctx.account_id, ctx.region, name))


def definition_out(store: BatchStore, row: Row) -> dict[str, Any]:
    spec: dict[str, Any] = loads(row["spec"])
    return {
        **spec,
        "jobDefinitionName": row["name"],
        "jobDefinitionArn": row["arn"],
        "revision": row["revision"],
        "status": row["status"],
        "tags": store.tags(str(row["arn"])),
        "containerOrchestrationType": "ECS",
    }


_SPEC_KEYS = ("type", "parameters", "schedulingPriority", "containerProperties", "nodeProperties",
              "retryStrategy", "propagateTags", "timeout", "platformCapabilities")


def check_kind(params: dict[str, Any]) -> None:
    """`container` needs containerProperties, `multinode` needs nodeProperties (and runs
    on EC2 only, as in AWS); neither takes the other's."""
    kind = params.get("type")
    if kind == "container":
        if params.get("nodeProperties"):
            raise client_error("nodeProperties can't be specified for a job definition of "
                               "type container; use type multinode")
        if not params.get("containerProperties"):
            raise client_error("containerProperties must be specified for a container job "
                               "definition")
    elif kind == "multinode":
        if params.get("containerProperties"):
            raise client_error("containerProperties can't be specified for a job definition "
                               "of type multinode; put containers in "
                               "nodeProperties.nodeRangeProperties")
        if "FARGATE" in (params.get("platformCapabilities") or []):
            raise client_error("Multi-node parallel jobs aren't supported on Fargate "
                               "resources")
        check_node_properties(params.get("nodeProperties"))
    else:
        raise client_error(f"kobako supports job definitions of type container and "
                           f"multinode, not {kind}")


def build_handlers(store: BatchStore) -> dict[str, Handler]:
    db = store.db

    async def register(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("jobDefinitionName"), "jobDefinition")
        check_kind(params)
        validate_retry(params.get("retryStrategy"))
        validate_timeout(params.get("timeout"))
        spec = {k: params[k] for k in _SPEC_KEYS if params.get(k) is not None}
        spec.setdefault("parameters", {})
        spec.setdefault("platformCapabilities", ["EC2"])
        with db.transaction():
            row = db.one("SELECT MAX(revision) AS r FROM batch_job_defs WHERE account = ? AND "
                         "region = ? AND name = ?", (ctx.account_id, ctx.region, name))
            revision = int(row["r"] or 0) + 1 if row else 1
            def_arn = arn(ctx.region, ctx.account_id, "job-definition", f"{name}:{revision}")
            db.execute(
                "INSERT INTO batch_job_defs (arn, account, region, name, revision, status, spec) "
                "VALUES (?, ?, ?, ?, ?, 'ACTIVE', ?)",
                (def_arn, ctx.account_id, ctx.region, name, revision, dumps(spec)))
            store.set_tags(def_arn, params.get("tags") or {})
        return {"jobDefinitionName": name, "jobDefinitionArn": def_arn, "revision": revision}

    async def describe(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = db.query("SELECT * FROM batch_job_defs WHERE account = ? AND region = ? "
                        "ORDER BY name, revision", (ctx.account_id, ctx.region))
        wanted = params.get("jobDefinitions")
        if wanted:
            keys = set(wanted)
            rows = [r for r in rows if r["arn"] in keys or r["name"] in keys
                    or f"{r['name']}:{r['revision']}" in keys]
        if params.get("jobDefinitionName"):
            rows = [r for r in rows if r["name"] == params["jobDefinitionName"]]
        if params.get("status"):
            rows = [r for r in rows if r["status"] == params["status"]]
        offset = offset_of(params.get("nextToken"))
        size = page_size(params.get("maxResults"), 100, 100)
        out: dict[str, Any] = {
            "jobDefinitions": [definition_out(store, r) for r in rows[offset:offset + size]]
        }
        if offset + size < len(rows):
            out["nextToken"] = token_for(offset + size)
        return out

    async def deregister(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = str(params.get("jobDefinition") or "")
        if not ref.startswith("arn:") and ":" not in ref:
            raise client_error("jobDefinition must be a name:revision or an ARN")
        row = find_definition(store, ctx, ref)
        if row is None:
            raise client_error(f"Job definition {ref} does not exist")
        db.execute("UPDATE batch_job_defs SET status = 'INACTIVE' WHERE arn = ?", (row["arn"],))
        return {}

    return {
        "RegisterJobDefinition": register,
        "DescribeJobDefinitions": describe,
        "DeregisterJobDefinition": deregister,
    }
