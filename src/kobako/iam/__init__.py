"""IAM: roles, their tags and policies, stored so that tools which read roles work
(the SageMaker SDK 3.x checks its execution role through GetRole and
SimulatePrincipalPolicy). kobako enforces no IAM policy.

IAM is global: clients sign for us-east-1 with the name `iam`, and roles live per
account, with no region.
"""

from __future__ import annotations

from kobako.config import Config
from kobako.iam.handlers import build_handlers
from kobako.iam.store import IamStore
from kobako.protocol.codecs import QueryCodec
from kobako.server.service import Service
from kobako.spec import service_model
from kobako.store.db import Database

__all__ = ["IamStore", "build"]


def build(config: Config, db: Database) -> Service:
    return Service(
        name="iam",
        codec=QueryCodec(service_model("iam")),
        handlers=build_handlers(IamStore(db)),
        signing_names=("iam",),
    )
