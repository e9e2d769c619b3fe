"""Calling another kobako service's handlers from inside a Task, without HTTP.

A service integration is a call to that service's own handler with a synthetic
`RequestContext` for the execution's account, so it sees the same validation,
storage and errors as a boto3 client would. Step Functions spells parameters in
PascalCase whatever the service's wire names are (`JobQueue` for Batch's
`jobQueue`); `to_model` / `from_model` translate along the botocore shapes, so map
keys (Batch `parameters`, tags) are left alone.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.protocol.http import BodyStream, HttpRequest
from kobako.protocol.sigv4 import Credential
from kobako.server.service import RequestContext, Service
from kobako.spec import Shape, service_model
from kobako.stepfunctions.errors import RUNTIME, StatesError


@dataclass
class Peer:
    """A served service a Task can call: its handlers and how credentials map to it."""

    service: Service
    model_name: str  # botocore's name: 's3', 'batch', 'stepfunctions'
    error_prefix: str  # how AWS names the service in aws-sdk errors: 'S3', 'Batch'
    users: dict[str, Credential]

    def context(self, operation: str, region: str, account_id: str) -> RequestContext:
        """Who the call runs as: the first configured user of the execution's account."""
        credential = next((u for u in self.users.values() if u.account_id == account_id),
                          Credential("states.amazonaws.com", "", "states", account_id))
        method = str(service_model(self.model_name).operation_model(operation)
                     .http.get("method", "POST"))
        request = HttpRequest(method, "/", "", {"host": "states.internal"},
                              BodyStream.of_bytes(b""))
        return RequestContext(request, str(uuid.uuid4()), operation, region, credential)

    async def call(self, operation: str, params: dict[str, Any], region: str,
                   account_id: str) -> Any:
        handler = self.service.handlers.get(operation)
        if handler is None:
            raise StatesError(RUNTIME, f"kobako does not serve the {self.error_prefix} "
                              f"operation '{operation}' yet.")
        ctx = self.context(operation, region, account_id)
        ctx.params = params  # S3 evaluates bucket policies on them beside the handler
        return await handler(ctx, params)


def sdk_error(prefix: str, exc: AwsError, request_id: str = "") -> StatesError:
    """An AwsError as aws-sdk integrations name it: `S3.NoSuchKeyException`."""
    code = exc.code if exc.code.endswith("Exception") else exc.code + "Exception"
    request_id = request_id or str(uuid.uuid4())
    return StatesError(f"{prefix}.{code}", f"{exc.message} (Service: {prefix}, Status Code: "
                       f"{exc.status}, Request ID: {request_id})")


def sdk_v1_cause(exc: AwsError, service: str) -> str:
    """An error's cause as the optimized integrations (batch:, sagemaker:) give it, in
    the AWS SDK for Java v1 wording: `msg (Service: AWSBatch; Status Code: 400; Error
    Code: ClientException; Request ID: ...; Proxy: null)`."""
    return f"{exc.message} (Service: {service}; Status Code: {exc.status}; Error Code: " \
        f"{exc.code}; Request ID: {uuid.uuid4()}; Proxy: null)"


def _member(shape: Shape, key: str) -> str | None:
    members = shape.members
    if key in members:
        return key
    for name in members:
        if name[:1].upper() + name[1:] == key:
            return str(name)
    return None


def to_model(shape: Shape | None, value: Any, where: str = "") -> Any:
    """Step Functions' PascalCase parameters as the service's handler expects them."""
    if shape is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _member(shape, key)
            if name is None:
                raise StatesError(RUNTIME, f"The field '{where}{key}' is not supported by "
                                  f"Step Functions for this resource.")
            member = shape.members[name]
            out[name] = to_model(member, item, f"{where}{key}.")
        return out
    if kind == "list" and isinstance(value, list):
        return [to_model(shape.member, item, where)
                for item in value]
    if kind == "map" and isinstance(value, dict):
        return {k: to_model(shape.value, v, where)
                for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise StatesError(RUNTIME, f"The field '{where.rstrip('.')}' must be a "
                                  f"timestamp: {value!r}") from None
    if kind == "blob":
        if isinstance(value, str):
            return value.encode()
        if not isinstance(value, bytes):
            return json.dumps(value, separators=(",", ":")).encode()
    return value


def from_model(shape: Shape | None, value: Any) -> Any:
    """A handler's result as Step Functions returns it: PascalCase, JSON-only values."""
    if isinstance(value, dict):
        members = shape.members if shape is not None and \
            shape.type_name == "structure" else None
        if shape is not None and shape.type_name == "map":
            return {k: from_model(shape.value, v)
                    for k, v in value.items()}
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key.startswith("__") or item is None:
                continue
            member = members.get(key) if members is not None else None
            out[key[:1].upper() + key[1:]] = from_model(member, item)
        return out
    if isinstance(value, list):
        member = shape.member if shape is not None and \
            shape.type_name == "list" else None
        return [from_model(member, item) for item in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
            f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value
