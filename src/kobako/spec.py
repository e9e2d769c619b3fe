"""Typed access to botocore's service models: the wire spec kobako implements.

botocore is used only as a model library here (ServiceModel, OperationModel, Shape);
kobako never uses its clients on the server path, except to reach another S3 endpoint
that holds a bucket's bytes (kobako.store.remote).
"""

from __future__ import annotations

import functools

from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel, Shape

__all__ = ["OperationModel", "ServiceModel", "Shape", "service_model"]

_loader = Loader()


@functools.cache
def service_model(name: str) -> ServiceModel:
    """The latest botocore model of service `name` (for example 's3', 'batch')."""
    data = _loader.load_service_model(name, "service-2")
    return ServiceModel(data, service_name=name)
