"""AWS Step Functions: an ASL interpreter (engine) with durable executions behind the API.

`connect(config, services)` gives Tasks in-process access to the other services of
the same server (Batch, S3 and the rest through `aws-sdk:`); code outside an app can
still add integrations with
`kobako.stepfunctions.integrations.INTEGRATIONS.register(resource_arn, handler)`.
"""

from kobako.stepfunctions.connect import connect
from kobako.stepfunctions.service import build

__all__ = ["build", "connect"]
