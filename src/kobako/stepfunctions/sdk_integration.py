"""`arn:aws:states:::aws-sdk:SERVICE:action` for the services kobako itself serves.

The action (`getObject`) names the service's operation (`GetObject`); parameters and
results go through the botocore shapes (`inprocess.to_model` / `from_model`), and a
service error becomes `<Service>.<Code>Exception` (`S3.NoSuchKeyException`) as AWS
names errors of aws-sdk integrations. S3 bodies are text in Step Functions: a
PutObject `Body` is sent as UTF-8 (JSON values serialized), a GetObject `Body`
comes back as a string.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.protocol.http import BodyStream, HttpResponse
from kobako.spec import service_model
from kobako.stepfunctions.errors import RUNTIME, StatesError
from kobako.stepfunctions.inprocess import Peer, from_model, sdk_error, to_model
from kobako.stepfunctions.integrations import Integrations, TaskCall, normalize

PREFIX = "arn:aws:states:::aws-sdk:"
_LOCATION = re.compile(rb"<LocationConstraint[^>]*>([^<]*)</LocationConstraint>")


class SdkTasks:
    """aws-sdk tasks against one served service (`sdk_name` as it appears in the ARN)."""

    def __init__(self, sdk_name: str, peer: Peer) -> None:
        self.sdk_name = sdk_name
        self.peer = peer
        self.model = service_model(peer.model_name)

    def register(self, integrations: Integrations) -> None:
        integrations.register(f"{PREFIX}{self.sdk_name}:*", self.invoke)

    async def invoke(self, call: TaskCall) -> Any:
        action = normalize(call.resource)[len(PREFIX) + len(self.sdk_name) + 1:]
        if "." in action:
            raise StatesError(RUNTIME, f"kobako supports only the request-response pattern "
                              f"for aws-sdk integrations, not '{call.resource}'.")
        operation = action[:1].upper() + action[1:]
        if operation not in self.model.operation_names:
            raise StatesError(RUNTIME, f"The resource '{call.resource}' names no "
                              f"{self.peer.error_prefix} API action.")
        op_model = self.model.operation_model(operation)
        raw = call.parameters if call.parameters is not None else {}
        if not isinstance(raw, dict):
            raise StatesError(RUNTIME, f"The Parameters of '{call.resource}' must be an "
                              "object.")
        params = to_model(op_model.input_shape, raw)
        for name, shape in (op_model.input_shape.members.items()
                            if op_model.input_shape is not None else []):
            if shape.type_name == "blob" and shape.serialization.get("streaming"):
                params[name] = BodyStream.of_bytes(params.get(name) or b"")
        missing = [m for m in (op_model.input_shape.required_members
                               if op_model.input_shape is not None else [])
                   if m not in params]
        if missing:
            raise StatesError(f"{self.peer.error_prefix}.ValidationException",
                              f"The field(s) {', '.join(missing)} are required by "
                              f"{self.sdk_name}:{action}.")
        try:
            result = await self.peer.call(operation, params, call.region, call.account_id)
        except AwsError as exc:
            raise sdk_error(self.peer.error_prefix, exc) from None
        if isinstance(result, HttpResponse):
            result = await _response_fields(operation, result)
        out: dict[str, Any] = {}
        for key, value in result.items():
            if isinstance(value, AsyncIterator):
                out[key] = b"".join([piece async for piece in value])
            else:
                out[key] = value
        converted: dict[str, Any] = from_model(op_model.output_shape, out)
        return converted


async def _response_fields(operation: str, response: HttpResponse) -> dict[str, Any]:
    """The few S3 handlers that answer raw HTTP (GetBucketLocation) as result fields."""
    body = response.body if isinstance(response.body, bytes) else \
        b"".join([piece async for piece in response.body])
    if operation == "GetBucketLocation":
        found = _LOCATION.search(body)
        region = found.group(1).decode() if found else ""
        return {"LocationConstraint": region} if region else {}
    return {}
