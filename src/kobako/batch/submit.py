"""SubmitJob: a job definition plus overrides becomes the rows the engine runs.

Everything a job needs at run time (command after `Ref::` substitution, environment,
resources, retry strategy, timeout) is resolved here once and stored with the job, so
later changes to the definition do not change a submitted job, as in AWS.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from kobako.batch.common import TERMINAL, arn, check_name, client_error, loads
from kobako.batch.definitions import validate_retry, validate_timeout
from kobako.batch.multinode import effective_properties, node_containers, node_overrides
from kobako.batch.store import BatchStore, NewJob
from kobako.store.db import Row

_REF = re.compile(r"Ref::([A-Za-z0-9_.-]+)")


def substitute(command: list[str], parameters: dict[str, str]) -> list[str]:
    """Replace `Ref::name` placeholders by parameter values; unknown ones stay."""
    def one(match: re.Match[str]) -> str:
        return parameters.get(match.group(1), match.group(0))

    return [_REF.sub(one, arg) for arg in command]


def _merge_env(base: list[dict[str, str]], extra: list[dict[str, str]]) -> list[dict[str, str]]:
    merged = {e["name"]: e.get("value", "") for e in base if "name" in e}
    merged.update({e["name"]: e.get("value", "") for e in extra if "name" in e})
    return [{"name": k, "value": v} for k, v in merged.items()]


def _merge_requirements(base: list[dict[str, str]], extra: list[dict[str, str]]
                        ) -> list[dict[str, str]]:
    merged = {r["type"]: r for r in base}
    merged.update({r["type"]: r for r in extra})
    return list(merged.values())


def resources(container: dict[str, Any]) -> tuple[float, int | None, int]:
    """(vCPUs, MiB, GPUs) from resourceRequirements, else the legacy vcpus/memory fields."""
    reqs = {r["type"]: r["value"] for r in container.get("resourceRequirements") or []}
    try:
        vcpus = float(reqs.get("VCPU", container.get("vcpus") or 1))
        memory_raw = reqs.get("MEMORY", container.get("memory"))
        memory = int(memory_raw) if memory_raw is not None else None
        gpus = int(reqs.get("GPU", 0))
    except ValueError:
        raise client_error("resourceRequirements values must be numbers") from None
    if vcpus <= 0 or (memory is not None and memory < 4) or gpus < 0:
        raise client_error("Invalid resourceRequirements: vCPU must be positive and memory at "
                           "least 4 MiB")
    return vcpus, memory, gpus


def resolve_container(definition: dict[str, Any], params: dict[str, Any]
                      ) -> tuple[dict[str, Any], dict[str, str]]:
    # A shallow copy is enough: only top-level keys are replaced below, never nested
    # values changed in place (and the caller's `definition` is freshly decoded).
    container = dict(definition.get("containerProperties") or {})
    overrides = params.get("containerOverrides") or {}
    if overrides.get("command") is not None:
        container["command"] = overrides["command"]
    container["environment"] = _merge_env(container.get("environment") or [],
                                          overrides.get("environment") or [])
    for legacy in ("vcpus", "memory"):
        if overrides.get(legacy) is not None:
            container[legacy] = overrides[legacy]
    if overrides.get("resourceRequirements"):
        container["resourceRequirements"] = _merge_requirements(
            container.get("resourceRequirements") or [], overrides["resourceRequirements"])
    if overrides.get("instanceType"):
        container["instanceType"] = overrides["instanceType"]
    parameters = {**(definition.get("parameters") or {}), **(params.get("parameters") or {})}
    container["command"] = substitute(list(container.get("command") or []), parameters)
    return container, parameters


@dataclass(frozen=True)
class _Submission:
    """What every row of one SubmitJob shares: who and where, the settings checked once
    (retry, timeout, dependencies, share and priority) and the detail they make."""

    account: str
    region: str
    name: str
    queue_arn: str
    def_arn: str
    job_id: str
    array_size: int
    depends: list[dict[str, Any]]
    deps: list[str]
    share: str | None
    priority: int | None
    detail: dict[str, Any]

    def row(self, job_id: str, needs: tuple[float, int | None, int], detail: dict[str, Any],
            *, parent_id: str | None = None, array_index: int | None = None,
            deps: list[str] | None = None, num_nodes: int | None = None,
            node_index: int | None = None) -> NewJob:
        """One row of the submission; `needs` is (vCPUs, MiB, GPUs) as resources() gives."""
        vcpus, memory, gpus = needs
        return NewJob(
            job_id=job_id, account=self.account, region=self.region, name=self.name,
            queue_arn=self.queue_arn, def_arn=self.def_arn, vcpus=vcpus, memory=memory,
            gpus=gpus, detail=detail, parent_id=parent_id, array_index=array_index,
            array_size=self.array_size or None, deps=deps or [], share=self.share,
            sched_priority=self.priority or 0, num_nodes=num_nodes, node_index=node_index)


def _submission(
    store: BatchStore, account: str, region: str, queue: Row, definition: Row,
    definition_spec: dict[str, Any], params: dict[str, Any], name: str,
) -> _Submission:
    """Check and resolve what single-node, array and multi-node jobs alike take from the
    request and the definition (a multi-node request has no arrayProperties by now)."""
    retry = params.get("retryStrategy") or definition_spec.get("retryStrategy")
    timeout = params.get("timeout") or definition_spec.get("timeout")
    validate_retry(retry)
    validate_timeout(timeout)
    depends = params.get("dependsOn") or []
    array_size = int((params.get("arrayProperties") or {}).get("size") or 0)
    if params.get("arrayProperties") is not None and not 2 <= array_size <= 10_000:
        raise client_error("Array job size must be between 2 and 10000")
    deps = _check_dependencies(store, depends, array_size)
    share, priority = share_and_priority(queue, definition_spec, params)
    detail: dict[str, Any] = {
        "jobDefinitionName": definition["name"],
        "retryStrategy": retry,
        "timeout": timeout,
        "dependsOn": depends,
        "tags": params.get("tags") or {},
        "propagateTags": params.get("propagateTags", definition_spec.get("propagateTags")),
        "platformCapabilities": definition_spec.get("platformCapabilities") or ["EC2"],
        "schedulingPriority": priority,
        "shareIdentifier": share,
    }
    return _Submission(
        account=account, region=region, name=name, queue_arn=str(queue["arn"]),
        def_arn=str(definition["arn"]), job_id=str(uuid.uuid4()), array_size=array_size,
        depends=depends, deps=deps, share=share, priority=priority, detail=detail)


def build_jobs(
    store: BatchStore, account: str, region: str, queue: Row, definition: Row,
    definition_spec: dict[str, Any], params: dict[str, Any],
) -> list[NewJob]:
    """The rows for one SubmitJob: one job, an array parent and its children, or a
    multi-node parent and its nodes."""
    name = check_name(params.get("jobName"), "jobName")
    if definition_spec.get("type") == "multinode":
        return build_multinode(store, account, region, queue, definition, definition_spec,
                               params, name)
    if params.get("nodeOverrides"):
        raise client_error("nodeOverrides can only be specified for multi-node parallel jobs")
    container, parameters = resolve_container(definition_spec, params)
    needs = resources(container)
    sub = _submission(store, account, region, queue, definition, definition_spec, params,
                      name)
    job_id = sub.job_id
    detail = {**sub.detail, "parameters": parameters, "container": container}
    if not sub.array_size:
        return [sub.row(job_id, needs, detail, deps=sub.deps)]
    jobs = [sub.row(job_id, needs, detail)]
    for index in range(sub.array_size):
        child_deps: list[str] = []
        for dep in sub.depends:
            kind = dep.get("type")
            if kind == "SEQUENTIAL":
                if index:
                    child_deps.append(f"{job_id}:{index - 1}")
            elif kind == "N_TO_N":
                child_deps.append(f"{dep['jobId']}:{index}")
            else:
                child_deps.append(str(dep["jobId"]))
        jobs.append(sub.row(f"{job_id}:{index}", needs, detail, parent_id=job_id,
                            array_index=index, deps=child_deps))
    return jobs


def build_multinode(
    store: BatchStore, account: str, region: str, queue: Row, definition: Row,
    definition_spec: dict[str, Any], params: dict[str, Any], name: str,
) -> list[NewJob]:
    """A multi-node parent (holding the whole gang's vCPUs, memory and GPUs, so that the
    scheduler places all nodes at once or none) and its nodes `<id>#<n>`, each with its
    node range's container and its node overrides resolved."""
    if params.get("arrayProperties") is not None:
        raise client_error("Array jobs are not supported for multi-node parallel jobs: "
                           "arrayProperties can't be specified with a multinode job "
                           "definition")
    if params.get("containerOverrides"):
        raise client_error("containerOverrides can't be specified for a multi-node parallel "
                           "job; use nodeOverrides.nodePropertyOverrides")
    overrides = params.get("nodeOverrides") or {}
    props = effective_properties(definition_spec["nodeProperties"], overrides)
    count, main = int(props["numNodes"]), int(props["mainNode"])
    per_node = node_overrides(overrides, count)
    sub = _submission(store, account, region, queue, definition, definition_spec, params,
                      name)
    nodes: list[NewJob] = []
    parameters: dict[str, str] = {}
    for index, range_container in enumerate(node_containers(props)):
        container, parameters = resolve_container(
            {**definition_spec, "containerProperties": range_container},
            {**params, "containerOverrides": per_node[index]})
        detail = {**sub.detail, "parameters": parameters, "container": container,
                  "nodeDetails": {"nodeIndex": index, "isMainNode": index == main}}
        nodes.append(sub.row(f"{sub.job_id}#{index}", resources(container), detail,
                             parent_id=sub.job_id, num_nodes=count, node_index=index))
    memories = [n.memory for n in nodes if n.memory is not None]
    needs = (sum(n.vcpus for n in nodes), sum(memories) if memories else None,
             sum(n.gpus for n in nodes))
    parent = sub.row(sub.job_id, needs,
                     {**sub.detail, "parameters": parameters, "nodeProperties": props},
                     deps=sub.deps, num_nodes=count)
    return [parent, *nodes]


def share_and_priority(queue: Row, definition: dict[str, Any], params: dict[str, Any]
                       ) -> tuple[str | None, int | None]:
    """A fair-share queue needs a shareIdentifier and a FIFO queue refuses one; the
    scheduling priority is the override, else the definition's (0-9999, higher first)."""
    fair = bool((loads(queue["spec"]) or {}).get("schedulingPolicyArn"))
    share = params.get("shareIdentifier")
    if fair and not share:
        raise client_error("shareIdentifier must be specified.")
    if not fair and share:
        raise client_error("shareIdentifier is not supported for a job queue without a "
                           "scheduling policy.")
    if share is not None and (len(str(share)) > 255 or "*" in str(share)):
        raise client_error("shareIdentifier must be 1-255 characters long and must not "
                           "contain an asterisk (*).")
    raw = params.get("schedulingPriorityOverride", definition.get("schedulingPriority"))
    priority = None if raw is None else int(raw)
    if priority is not None and not 0 <= priority <= 9999:
        raise client_error("schedulingPriority must be between 0 and 9999.")
    return (str(share) if share else None), priority


def _check_dependencies(store: BatchStore, depends: list[dict[str, Any]], array_size: int
                        ) -> list[str]:
    if len(depends) > 20:
        raise client_error("A job can depend on at most 20 jobs")
    found: list[str] = []
    for dep in depends:
        kind = dep.get("type")
        if kind not in (None, "N_TO_N", "SEQUENTIAL"):
            raise client_error(f"Invalid dependency type {kind}")
        if kind in ("N_TO_N", "SEQUENTIAL") and not array_size:
            raise client_error(f"{kind} dependencies are only valid for array jobs")
        if kind == "SEQUENTIAL":
            if dep.get("jobId"):
                raise client_error("A SEQUENTIAL dependency must not name a jobId")
            continue
        target = str(dep.get("jobId") or "")
        row = store.job(target)
        if row is None:
            raise client_error(f"Dependent Job ID {target} does not exist")
        if (kind == "N_TO_N" and row["array_size"] != array_size) or \
                (kind == "N_TO_N" and row["parent_id"]):
            raise client_error("An N_TO_N dependency must name an array job of the same size")
        if row["status"] not in TERMINAL or row["status"] == "FAILED":
            found.append(target)
    return found


def task_arn(region: str, account: str, job_id: str) -> str:
    """The ECS task ARN an attempt reports (one per job, as AWS's look)."""
    return (f"arn:aws:ecs:{region}:{account}:task/kobako/"
            f"{job_id.replace(':', '-').replace('#', '-')}")


def job_arn(row: Row) -> str:
    return arn(str(row["region"]), str(row["account"]), "job", str(row["job_id"]))
