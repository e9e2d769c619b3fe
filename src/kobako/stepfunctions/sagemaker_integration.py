"""`arn:aws:states:::sagemaker:*`: SageMaker jobs run by kobako's own SageMaker.

createTrainingJob, createTransformJob and createProcessingJob (and `.sync`), plus
createModel, createEndpointConfig, createEndpoint and updateEndpoint, call SageMaker's
in-process handlers as they are (a handler the package does not have yet fails the
state with States.Runtime). `.sync` polls Describe*Job until a terminal status and
returns its answer, PascalCase with timestamps in epoch milliseconds as Step Functions
returns them; a Failed or Stopped job fails the state with States.TaskFailed and that
answer as JSON for its Cause. A `.sync` Task cancelled by StopExecution, TimeoutSeconds
or HeartbeatSeconds stops its job (Stop<Job>), as AWS does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.spec import Shape, service_model
from kobako.stepfunctions.errors import RUNTIME, TASK_FAILED, StatesError
from kobako.stepfunctions.inprocess import Peer, sdk_v1_cause, to_model
from kobako.stepfunctions.integrations import Integrations, TaskCall, stop_reason

PREFIX = "arn:aws:states:::sagemaker:"
POLL_FIRST, POLL_MAX = 0.05, 1.0
# Task action -> (job noun, name field); `.sync` waits on Describe<noun>.
JOBS = {"createTrainingJob": ("TrainingJob", "TrainingJobName"),
        "createTransformJob": ("TransformJob", "TransformJobName"),
        "createProcessingJob": ("ProcessingJob", "ProcessingJobName")}
PLAIN = ("createModel", "createEndpointConfig", "createEndpoint", "updateEndpoint")
DONE = {"Completed", "Failed", "Stopped"}


class SageMakerTasks:
    def __init__(self, sagemaker: Peer) -> None:
        self.peer = sagemaker
        self.model = service_model("sagemaker")

    def register(self, integrations: Integrations) -> None:
        for action in (*JOBS, *PLAIN):
            integrations.register(PREFIX + action, self._plain(action))
        for action in JOBS:
            integrations.register(PREFIX + action + ".sync", self._sync(action))

    async def _call(self, operation: str, params: dict[str, Any], call: TaskCall) -> Any:
        try:
            return await self.peer.call(operation, params, call.region, call.account_id)
        except AwsError as exc:
            code = exc.code if exc.code.endswith("Exception") else exc.code + "Exception"
            raise StatesError(f"SageMaker.{code}",
                              sdk_v1_cause(exc, "AmazonSageMaker")) from None

    async def _create(self, action: str, call: TaskCall) -> tuple[str, Any]:
        if not isinstance(call.parameters, dict):
            raise StatesError(RUNTIME, f"sagemaker:{action} needs an object of Parameters.")
        operation = action[:1].upper() + action[1:]
        op = self.model.operation_model(operation)
        result = await self._call(operation, to_model(op.input_shape, call.parameters), call)
        return operation, _pascal(op.output_shape, result)

    def _plain(self, action: str) -> Any:
        async def handler(call: TaskCall) -> Any:
            return (await self._create(action, call))[1]
        return handler

    def _sync(self, action: str) -> Any:
        noun, name_key = JOBS[action]

        async def handler(call: TaskCall) -> Any:
            resumed = call.resume or {}
            name = resumed.get(name_key)
            if name is None:
                created = (await self._create(action, call))[1]
                name = str(call.parameters[name_key])
                if call.remember is not None:
                    call.remember({name_key: name})  # re-attach here after a restart
                if call.submitted is not None:
                    call.submitted(created)
            try:
                detail = await self._until_done(noun, name_key, str(name), call)
            except asyncio.CancelledError as exc:
                if stop_reason(exc, call.execution_arn) is not None:
                    with contextlib.suppress(StatesError):
                        await self._call(f"Stop{noun}", {name_key: name}, call)
                raise
            if detail.get(f"{noun}Status") != "Completed":
                raise StatesError(TASK_FAILED, json.dumps(detail, separators=(",", ":")))
            return detail
        return handler

    async def _until_done(self, noun: str, name_key: str, name: str,
                          call: TaskCall) -> dict[str, Any]:
        op = self.model.operation_model(f"Describe{noun}")
        delay = POLL_FIRST
        while True:
            found = await self._call(f"Describe{noun}", {name_key: name}, call)
            if found.get(f"{noun}Status") in DONE:
                detail: dict[str, Any] = _pascal(op.output_shape, found)
                return detail
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)


def _pascal(shape: Shape | None, value: Any) -> Any:
    """SageMaker's answer as Step Functions gives it: timestamps in epoch milliseconds."""
    kind = shape.type_name if shape is not None else None
    if kind == "timestamp":
        if isinstance(value, datetime):
            return int(value.timestamp() * 1000)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return round(value * 1000)
        return value
    if isinstance(value, dict):
        if kind == "map":
            return {k: _pascal(shape.value if shape else None, v)
                    for k, v in value.items()}
        members = shape.members if kind == "structure" and shape is not None else {}
        return {k[:1].upper() + k[1:]: _pascal(members.get(k), v)
                for k, v in value.items() if v is not None and not k.startswith("__")}
    if isinstance(value, list):
        member = shape.member if kind == "list" and shape is not None else None
        return [_pascal(member, v) for v in value]
    return value
