"""sagemaker-runtime InvokeEndpoint and InvokeEndpointWithResponseStream: route to a
variant's model server, relay its answer.

A model server's non-200 answer becomes ModelError (424) carrying its status and body,
as SageMaker reports a container's error. The streaming call relays the answer as
PayloadPart events, one per HTTP chunk the model server sends, as they arrive; a model
server that answers with a plain (Content-Length) body is relayed as one PayloadPart.
Once the stream has begun, errors can only travel as events: the model server
stalling past the limit or cutting the stream ends it with a ModelStreamError event
(ErrorCode ModelInvocationTimeExceeded or StreamBroken), as AWS documents.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.sagemaker.endpoints import EndpointManager, Variant
from kobako.sagemaker.model_client import Answer, StreamBroken
from kobako.sagemaker.store import ENDPOINT, Key, SageMakerStore
from kobako.server.service import Handler, RequestContext

# AWS: the container must answer an invocation within 60 s.
_TIMEOUT = 60.0
# kobako's limit on the rest of a streamed answer, between two pieces.
_STREAM_IDLE = 60.0


def _validation(message: str) -> AwsError:
    return AwsError("ValidationError", message, 400)


def build_handlers(store: SageMakerStore, manager: EndpointManager) -> dict[str, Handler]:
    def target(ctx: RequestContext, params: dict[str, Any]) -> tuple[dict[str, Any], Variant]:
        name = str(params.get("EndpointName") or "")
        found = store.fields(Key(ENDPOINT, ctx.account_id, ctx.region, name),
                             "$.EndpointName", "$.EndpointStatus")
        if found is None:
            raise _validation(f"Endpoint {name} of account {ctx.account_id} not found.")
        detail = {"EndpointName": str(found[0]), "EndpointStatus": str(found[1])}
        key = Key(ENDPOINT, ctx.account_id, ctx.region, detail["EndpointName"])
        if detail["EndpointStatus"] not in ("InService", "Updating", "SystemUpdating"):
            raise _validation(f"Endpoint {name} of account {ctx.account_id} is not in service "
                              f"(status {detail['EndpointStatus']}).")
        wanted = params.get("TargetVariant")
        variant = manager.pick(key, wanted)
        if variant is None:
            if wanted:
                raise _validation(f"Target variant {wanted} does not exist for endpoint "
                                  f"{name}.")
            raise AwsError("ServiceUnavailable", "The endpoint has no running variant.", 503,
                           sender_fault=False)
        return detail, variant

    async def call(ctx: RequestContext, params: dict[str, Any], detail: dict[str, Any],
                   variant: Variant) -> Answer:
        """POST /invocations; the answer's head, or the AWS error for a failed call."""
        headers = {"Content-Type": str(params.get("ContentType") or "application/json"),
                   "Accept": str(params.get("Accept") or "*/*")}
        if params.get("CustomAttributes"):
            headers["X-Amzn-SageMaker-Custom-Attributes"] = str(params["CustomAttributes"])
        body = params.get("Body") or b""
        body = body if isinstance(body, bytes) else str(body).encode()
        try:
            answer = await manager.client.post(variant.port, body, headers, _TIMEOUT)
            if answer.status == 200:
                return answer
            text = (await answer.read()).decode(errors="replace")
            answer.close()
        except TimeoutError:
            raise AwsError("ModelError", "Your invocation timed out while waiting for a "
                           "response from container primary.", 424,
                           fields={"OriginalStatusCode": "408"}) from None
        except (OSError, StreamBroken) as error:
            raise AwsError("ModelError", f"Could not reach container primary: {error}", 424,
                           fields={"OriginalStatusCode": "502"}) from None
        kind_of = "client" if 400 <= answer.status < 500 else "server"
        group = f"/aws/sagemaker/Endpoints/{detail['EndpointName']}"
        raise AwsError(
            "ModelError",
            f'Received {kind_of} error ({answer.status}) from primary with message "{text}". '
            f"See the log group {group} for more information.", 424,
            fields={"OriginalStatusCode": str(answer.status), "OriginalMessage": text,
                    "LogStreamArn": f"arn:aws:logs:{ctx.region}:{ctx.account_id}:"
                                    f"log-group:{group}"})

    async def invoke_endpoint(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        detail, variant = target(ctx, params)
        answer = await call(ctx, params, detail, variant)
        try:
            async with asyncio.timeout(_TIMEOUT):
                payload = await answer.read()
        except TimeoutError:
            answer.close()
            raise AwsError("ModelError", "Your invocation timed out while waiting for a "
                           "response from container primary.", 424,
                           fields={"OriginalStatusCode": "408"}) from None
        except (OSError, StreamBroken) as error:
            answer.close()
            raise AwsError("ModelError", f"Could not read the answer of container primary: "
                           f"{error}", 424, fields={"OriginalStatusCode": "502"}) from None
        answer.close()
        return {"Body": payload, "ContentType": answer.content_type or "application/json",
                "InvokedProductionVariant": variant.name, **_custom(answer)}

    async def invoke_with_response_stream(ctx: RequestContext, params: dict[str, Any]
                                          ) -> dict[str, Any]:
        detail, variant = target(ctx, params)
        answer = await call(ctx, params, detail, variant)
        result: dict[str, Any] = {"Body": _parts(answer),
                                  "ContentType": answer.content_type or "application/json",
                                  "InvokedProductionVariant": variant.name, **_custom(answer)}
        return result

    return {"InvokeEndpoint": invoke_endpoint,
            "InvokeEndpointWithResponseStream": invoke_with_response_stream}


def _custom(answer: Answer) -> dict[str, str]:
    """The container's X-Amzn-SageMaker-Custom-Attributes answer header, relayed."""
    found = answer.headers.get("x-amzn-sagemaker-custom-attributes")
    return {"CustomAttributes": found} if found else {}


async def _parts(answer: Answer) -> AsyncIterator[dict[str, Any]]:
    """One PayloadPart per piece of the model server's answer, as it arrives."""
    pieces = answer.pieces().__aiter__()
    try:
        while True:
            try:
                async with asyncio.timeout(_STREAM_IDLE):
                    piece = await anext(pieces)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise AwsError("ModelStreamError", "The model failed to finish sending the "
                               "response within the timeout period allowed by Amazon "
                               "SageMaker.", 424,
                               fields={"ErrorCode": "ModelInvocationTimeExceeded"}) from None
            except (OSError, StreamBroken) as error:
                raise AwsError("ModelStreamError", f"The connection between the client and "
                               f"the model was closed: {error}", 424,
                               fields={"ErrorCode": "StreamBroken"}) from None
            yield {"PayloadPart": {"Bytes": piece}}
    finally:
        answer.close()
