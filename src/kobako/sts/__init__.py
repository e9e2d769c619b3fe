"""STS: GetCallerIdentity, which SDKs (the SageMaker SDK among them) call first."""

from __future__ import annotations

from typing import Any

from kobako.protocol.codecs import QueryCodec
from kobako.server.service import RequestContext, Service
from kobako.spec import service_model


async def get_caller_identity(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    user = ctx.credential
    return {
        "UserId": user.access_key_id,
        "Account": user.account_id,
        "Arn": f"arn:aws:iam::{user.account_id}:user/{user.display_name}",
    }


def build() -> Service:
    return Service(
        name="sts",
        codec=QueryCodec(service_model("sts")),
        handlers={"GetCallerIdentity": get_caller_identity},
        signing_names=("sts",),
    )
