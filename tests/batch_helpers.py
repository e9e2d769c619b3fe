"""Shared helpers for the Batch tests: an environment per test, polling with deadlines."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_n = iter(range(1_000_000))


@dataclass
class Env:
    batch: Any
    queue: str
    ce: str
    prefix: str

    def definition(self, command: list[str], **kwargs: Any) -> str:
        name = f"{self.prefix}-def-{next(_n)}"
        props = {"image": "busybox", "command": command,
                 "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                          {"type": "MEMORY", "value": "256"}]}
        props.update(kwargs.pop("container", {}))
        self.batch.register_job_definition(jobDefinitionName=name, type="container",
                                           containerProperties=props, **kwargs)
        return name

    def submit(self, definition: str, **kwargs: Any) -> str:
        out = self.batch.submit_job(jobName=kwargs.pop("jobName", "job"), jobQueue=self.queue,
                                    jobDefinition=definition, **kwargs)
        return str(out["jobId"])

    def describe(self, job_id: str) -> dict[str, Any]:
        jobs: list[dict[str, Any]] = self.batch.describe_jobs(jobs=[job_id])["jobs"]
        return jobs[0]

    def wait(self, job_id: str, statuses: tuple[str, ...] = ("SUCCEEDED", "FAILED"),
             timeout: float = 20) -> dict[str, Any]:
        return wait_for(lambda: self._if_status(job_id, statuses), timeout,
                        f"job {job_id} never reached {statuses}")

    def _if_status(self, job_id: str, statuses: tuple[str, ...]) -> dict[str, Any] | None:
        job = self.describe(job_id)
        return job if job["status"] in statuses else None


def wait_for(check: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(message)


def make_env(batch: Any, max_vcpus: int = 2, priority: int = 1) -> Env:
    prefix = f"t{os.getpid()}-{next(_n)}"
    ce = batch.create_compute_environment(
        computeEnvironmentName=f"{prefix}-ce", type="MANAGED",
        computeResources={"type": "EC2", "maxvCpus": max_vcpus, "minvCpus": 0,
                          "instanceTypes": ["optimal"], "subnets": ["subnet-1"],
                          "securityGroupIds": ["sg-1"], "instanceRole": "ecsInstanceRole"},
    )["computeEnvironmentArn"]
    queue = batch.create_job_queue(
        jobQueueName=f"{prefix}-q", priority=priority,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}])["jobQueueArn"]
    return Env(batch, queue, ce, prefix)
