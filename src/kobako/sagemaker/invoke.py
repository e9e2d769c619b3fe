"""sagemaker-runtime InvokeEndpoint: route to a variant's model server, relay its answer.

A model server's non-200 answer becomes ModelError (424) carrying its status and body,
as SageMaker reports a container's error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.sagemaker.endpoints import EndpointManager
from kobako.sagemaker.serving import post
from kobako.sagemaker.store import ENDPOINT, Key, SageMakerStore
from kobako.server.service import Handler, RequestContext

_TIMEOUT = 60.0


def _validation(message: str) -> AwsError:
    return AwsError("ValidationError", message, 400)


def build_handlers(store: SageMakerStore, manager: EndpointManager) -> dict[str, Handler]:
    async def invoke_endpoint(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = str(params.get("EndpointName") or "")
        key = Key(ENDPOINT, ctx.account_id, ctx.region, name)
        detail = store.get(key)
        if detail is None:
            raise _validation(f"Endpoint {name} of account {ctx.account_id} not found.")
        key = Key(ENDPOINT, ctx.account_id, ctx.region, detail["EndpointName"])
        if detail["EndpointStatus"] not in ("InService", "Updating", "SystemUpdating"):
            raise _validation(f"Endpoint {name} of account {ctx.account_id} is not in service "
                              f"(status {detail['EndpointStatus']}).")
        target = params.get("TargetVariant")
        variant = manager.pick(key, target)
        if variant is None:
            if target:
                raise _validation(f"Target variant {target} does not exist for endpoint "
                                  f"{name}.")
            raise AwsError("ServiceUnavailable", "The endpoint has no running variant.", 503,
                           sender_fault=False)
        headers = {"Content-Type": str(params.get("ContentType") or "application/json"),
                   "Accept": str(params.get("Accept") or "*/*")}
        if params.get("CustomAttributes"):
            headers["X-Amzn-SageMaker-Custom-Attributes"] = str(params["CustomAttributes"])
        body = params.get("Body") or b""
        try:
            status, payload, kind = await asyncio.to_thread(
                post, variant.port, body if isinstance(body, bytes) else str(body).encode(),
                headers, _TIMEOUT)
        except TimeoutError:
            raise AwsError("ModelError", "Your invocation timed out while waiting for a "
                           "response from container primary.", 424,
                           fields={"OriginalStatusCode": "408"}) from None
        except OSError as error:
            raise AwsError("ModelError", f"Could not reach container primary: {error}", 424,
                           fields={"OriginalStatusCode": "502"}) from None
        if status != 200:
            text = payload.decode(errors="replace")
            kind_of = "client" if 400 <= status < 500 else "server"
            group = f"/aws/sagemaker/Endpoints/{detail['EndpointName']}"
            raise AwsError(
                "ModelError",
                f'Received {kind_of} error ({status}) from primary with message "{text}". '
                f"See the log group {group} for more information.", 424,
                fields={"OriginalStatusCode": str(status), "OriginalMessage": text,
                        "LogStreamArn": f"arn:aws:logs:{ctx.region}:{ctx.account_id}:"
                                        f"log-group:{group}"})
        return {"Body": payload, "ContentType": kind or "application/json",
                "InvokedProductionVariant": variant.name}

    return {"InvokeEndpoint": invoke_endpoint}
