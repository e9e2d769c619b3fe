"""AWS Step Functions: an ASL interpreter (engine) with durable executions behind the API.

Other packages add Task integrations with
`kobako.stepfunctions.integrations.INTEGRATIONS.register(resource_arn, handler)`.
"""

from kobako.stepfunctions.service import build

__all__ = ["build"]
