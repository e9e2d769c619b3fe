"""What the handlers of the bucket configurations (policy, CORS, tagging...) share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kobako.server.service import Handler, RequestContext

if TYPE_CHECKING:  # the backend imports the access checks, which use this module
    from kobako.s3.backend import S3Backend


def deleter(s3: S3Backend, config: str) -> Handler:
    """The DeleteBucket<Config> handler of the bucket config `config`: it forgets the
    config, and answers the same whether there was one or not."""

    async def delete_bucket_config(ctx: RequestContext,
                                   params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        s3.store.set_config(bucket.name, config, None)
        return {}

    return delete_bucket_config
