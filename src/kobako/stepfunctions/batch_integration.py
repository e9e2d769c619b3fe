"""`arn:aws:states:::batch:submitJob` and `.sync`: Batch jobs run by kobako's own Batch.

SubmitJob and DescribeJobs are Batch's in-process handlers (see `inprocess.Peer`).
`.sync` polls DescribeJobs until the job is SUCCEEDED or FAILED and returns the job
object as AWS does (PascalCase keys); a FAILED job fails the state with
States.TaskFailed and that same object as JSON for its Cause. When the Task is
cancelled (execution stopped, TimeoutSeconds or HeartbeatSeconds passed) the job is
terminated with the reason AWS gives, as Step Functions does for `.sync` jobs. The
job id is recorded in the execution's cursor before waiting, so after `kill -9` the
resumed Task waits on the same job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.spec import service_model
from kobako.stepfunctions.errors import RUNTIME, TASK_FAILED, StatesError
from kobako.stepfunctions.inprocess import Peer, from_model, sdk_v1_cause, to_model
from kobako.stepfunctions.integrations import Integrations, TaskCall, stop_reason

SUBMIT = "arn:aws:states:::batch:submitJob"
POLL_FIRST, POLL_MAX = 0.05, 1.0  # seconds between DescribeJobs, doubling up to the max
MANAGED_BY_AWS = {"name": "MANAGED_BY_AWS", "value": "STARTED_BY_STEP_FUNCTIONS"}


class BatchTasks:
    def __init__(self, batch: Peer) -> None:
        self.batch = batch
        model = service_model("batch")
        self.request_shape = model.operation_model("SubmitJob").input_shape
        self.job_shape = model.shape_for("JobDetail")

    def register(self, integrations: Integrations) -> None:
        integrations.register(SUBMIT, self.submit)
        integrations.register(SUBMIT + ".sync", self.run)

    async def _submit(self, call: TaskCall, sync: bool = False) -> dict[str, Any]:
        if not isinstance(call.parameters, dict):
            raise StatesError(RUNTIME, "batch:submitJob needs an object of Parameters.")
        params = to_model(self.request_shape, call.parameters)
        if sync:  # AWS marks the jobs a `.sync` Task manages in their environment
            overrides = params.setdefault("containerOverrides", {})
            overrides["environment"] = [*(overrides.get("environment") or []), MANAGED_BY_AWS]
        try:
            result: dict[str, Any] = await self.batch.call(
                "SubmitJob", params, call.region, call.account_id)
        except AwsError as exc:
            raise StatesError(f"Batch.{_exception(exc.code)}", _cause(exc)) from None
        return result

    async def submit(self, call: TaskCall) -> Any:
        return from_model(None, await self._submit(call))

    async def run(self, call: TaskCall) -> Any:
        job_id = str((call.resume or {}).get("jobId") or "")
        if not job_id:
            submitted = await self._submit(call, sync=True)
            job_id = str(submitted["jobId"])
            if call.remember is not None:  # a restart re-attaches instead of resubmitting
                call.remember({"jobId": job_id})
            if call.submitted is not None:
                call.submitted(from_model(None, submitted))
        try:
            job = await self._until_done(job_id, call)
        except asyncio.CancelledError as exc:
            reason = stop_reason(exc, call.execution_arn)
            if reason is not None:
                with contextlib.suppress(AwsError, StatesError):
                    await self.batch.call("TerminateJob", {"jobId": job_id, "reason": reason},
                                          call.region, call.account_id)
            raise
        output = from_model(self.job_shape, job)
        if job["status"] != "SUCCEEDED":
            raise StatesError(TASK_FAILED, json.dumps(output, separators=(",", ":")))
        return output

    async def _until_done(self, job_id: str, call: TaskCall) -> dict[str, Any]:
        delay = POLL_FIRST
        while True:
            found = await self.batch.call("DescribeJobs", {"jobs": [job_id]},
                                          call.region, call.account_id)
            jobs: list[dict[str, Any]] = found.get("jobs") or []
            if not jobs:
                raise StatesError(TASK_FAILED, f"The Batch job {job_id} no longer exists.")
            if jobs[0]["status"] in ("SUCCEEDED", "FAILED"):
                return jobs[0]
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)


def _exception(code: str) -> str:
    return code if code.endswith("Exception") else code + "Exception"


def _cause(exc: AwsError) -> str:
    """The error as the optimized integration's Java SDK words it."""
    return sdk_v1_cause(exc, "AWSBatch")
