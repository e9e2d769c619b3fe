"""Models, endpoint configs and endpoints: the SageMaker hosting control plane.

Errors and messages are AWS's own (ValidationException "Could not find model ..."),
since the botocore model declares none for these calls and the SageMaker SDK
matches on the messages.
"""

from __future__ import annotations

from typing import Any

from kobako.protocol.errors import AwsError
from kobako.sagemaker.common import arn, check_name, filter_sort, now, page, validation
from kobako.sagemaker.endpoints import EndpointManager, TooBig
from kobako.sagemaker.instances import lookup
from kobako.sagemaker.store import CONFIG, ENDPOINT, MODEL, Key, SageMakerStore
from kobako.server.service import Handler, RequestContext

_MODEL_ECHO = ("PrimaryContainer", "Containers", "InferenceExecutionConfig", "ExecutionRoleArn",
               "VpcConfig", "EnableNetworkIsolation")
_CONFIG_ECHO = ("ProductionVariants", "DataCaptureConfig", "KmsKeyId", "AsyncInferenceConfig",
                "ExplainerConfig", "ShadowProductionVariants", "ExecutionRoleArn", "VpcConfig",
                "EnableNetworkIsolation")


def _public(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if not k.startswith("_")}


def build_handlers(store: SageMakerStore, manager: EndpointManager) -> dict[str, Handler]:
    def key(ctx: RequestContext, kind: str, name: Any) -> Key:
        return Key(kind, ctx.account_id, ctx.region, str(name or ""))

    # ------------------------------------------------------------ models

    async def create_model(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("ModelName"), "modelName")
        model_arn = arn(ctx.region, ctx.account_id, "model", name)
        containers = params.get("Containers") or []
        if not params.get("PrimaryContainer") and not containers:
            raise validation("Either PrimaryContainer or Containers must be specified.")
        if len(containers) > 1:
            raise validation("kobako serves single-container models only; inference pipelines "
                             "(several Containers) are not supported yet.")
        detail = {k: params[k] for k in _MODEL_ECHO if params.get(k) is not None}
        detail.update({"ModelName": name, "ModelArn": model_arn, "CreationTime": now()})
        if not store.insert(key(ctx, MODEL, name), detail):
            raise validation(f'Cannot create already existing model "{model_arn}".')
        return {"ModelArn": model_arn}

    def get_model(ctx: RequestContext, name: Any) -> dict[str, Any]:
        detail = store.get(key(ctx, MODEL, name))
        if detail is None:
            raise validation(f'Could not find model '
                             f'"{arn(ctx.region, ctx.account_id, "model", str(name))}".')
        return detail

    async def describe_model(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return get_model(ctx, params.get("ModelName"))

    async def delete_model(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        get_model(ctx, params.get("ModelName"))
        store.delete(key(ctx, MODEL, params.get("ModelName")))
        return {}

    async def list_models(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        items = filter_sort(store.all(MODEL, ctx.account_id, ctx.region), params,
                            name_key="ModelName")
        return page(items, params, "Models", lambda d: {
            k: d[k] for k in ("ModelName", "ModelArn", "CreationTime")})

    # ------------------------------------------------------------ endpoint configs

    async def create_endpoint_config(ctx: RequestContext, params: dict[str, Any]
                                     ) -> dict[str, Any]:
        name = check_name(params.get("EndpointConfigName"), "endpointConfigName")
        config_arn = arn(ctx.region, ctx.account_id, "endpoint-config", name)
        variants = params.get("ProductionVariants") or []
        if not variants:
            raise validation("ProductionVariants must contain at least one variant.")
        names = [v.get("VariantName") for v in variants]
        if len(set(names)) != len(names):
            raise validation("Variant names must be unique within an endpoint configuration.")
        for variant in variants:
            get_model(ctx, variant.get("ModelName"))
            if variant.get("InstanceType") and lookup(str(variant["InstanceType"])) is None:
                raise validation(f"Invalid instance type {variant['InstanceType']}.")
        detail = {k: params[k] for k in _CONFIG_ECHO if params.get(k) is not None}
        detail.update({"EndpointConfigName": name, "EndpointConfigArn": config_arn,
                       "CreationTime": now()})
        if not store.insert(key(ctx, CONFIG, name), detail):
            raise validation(f'Cannot create already existing endpoint configuration '
                             f'"{config_arn}".')
        return {"EndpointConfigArn": config_arn}

    def get_config(ctx: RequestContext, name: Any) -> dict[str, Any]:
        detail = store.get(key(ctx, CONFIG, name))
        if detail is None:
            raise validation(f'Could not find endpoint configuration "{name}".')
        return detail

    async def describe_endpoint_config(ctx: RequestContext, params: dict[str, Any]
                                       ) -> dict[str, Any]:
        return get_config(ctx, params.get("EndpointConfigName"))

    async def delete_endpoint_config(ctx: RequestContext, params: dict[str, Any]
                                     ) -> dict[str, Any]:
        get_config(ctx, params.get("EndpointConfigName"))
        store.delete(key(ctx, CONFIG, params.get("EndpointConfigName")))
        return {}

    async def list_endpoint_configs(ctx: RequestContext, params: dict[str, Any]
                                    ) -> dict[str, Any]:
        items = filter_sort(store.all(CONFIG, ctx.account_id, ctx.region), params,
                            name_key="EndpointConfigName")
        return page(items, params, "EndpointConfigs", lambda d: {
            k: d[k] for k in ("EndpointConfigName", "EndpointConfigArn", "CreationTime")})

    # ------------------------------------------------------------ endpoints

    def deployment(ctx: RequestContext, config: dict[str, Any]) -> dict[str, Any]:
        """Snapshot each variant's model, as AWS does: deleting the model later is harmless.
        A deployment this host can never place is refused as AWS refuses one over the
        account's instance quota."""
        plan: dict[str, Any] = {}
        for variant in config["ProductionVariants"]:
            model = get_model(ctx, variant["ModelName"])
            container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
            weight = variant.get("InitialVariantWeight")
            plan[variant["VariantName"]] = {
                "Container": container, "Weight": 1.0 if weight is None else float(weight),
                "Count": int(variant.get("InitialInstanceCount") or 1),
                "HealthCheckTimeout": variant.get("ContainerStartupHealthCheckTimeoutInSeconds"),
                "InstanceType": variant.get("InstanceType"),
                "MemorySizeInMB": (variant.get("ServerlessConfig") or {}).get("MemorySizeInMB"),
            }
        try:
            manager.ask(plan)
        except TooBig as error:
            raise AwsError("ResourceLimitExceeded", str(error), 400) from None
        return plan

    def get_endpoint(ctx: RequestContext, name: Any) -> dict[str, Any]:
        detail = store.get(key(ctx, ENDPOINT, name))
        if detail is None:
            raise validation(f'Could not find endpoint "{name}".')
        return detail

    async def create_endpoint(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("EndpointName"), "endpointName")
        endpoint_arn = arn(ctx.region, ctx.account_id, "endpoint", name)
        config = get_config(ctx, params.get("EndpointConfigName"))
        plan = deployment(ctx, config)
        stamp = now()
        detail = {"EndpointName": name, "EndpointArn": endpoint_arn,
                  "EndpointConfigName": config["EndpointConfigName"],
                  "EndpointStatus": "Creating", "CreationTime": stamp,
                  "LastModifiedTime": stamp, "_Deployment": plan}
        endpoint_key = key(ctx, ENDPOINT, name)
        if not store.insert(endpoint_key, detail, "Creating"):
            raise validation(f'Cannot create already existing endpoint "{endpoint_arn}".')
        manager.deploy(endpoint_key, detail, plan)
        return {"EndpointArn": endpoint_arn}

    async def describe_endpoint(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return _public(get_endpoint(ctx, params.get("EndpointName")))

    async def update_endpoint(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        detail = get_endpoint(ctx, params.get("EndpointName"))
        if detail["EndpointStatus"] != "InService":
            raise validation(f'Cannot update in-progress endpoint "{detail["EndpointArn"]}".')
        config = get_config(ctx, params.get("EndpointConfigName"))
        plan = deployment(ctx, config)
        detail.update({"EndpointStatus": "Updating", "LastModifiedTime": now(),
                       "_Pending": config["EndpointConfigName"]})
        endpoint_key = key(ctx, ENDPOINT, detail["EndpointName"])
        store.update(endpoint_key, detail, "Updating")
        manager.deploy(endpoint_key, detail, plan)
        return {"EndpointArn": detail["EndpointArn"]}

    async def delete_endpoint(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        detail = get_endpoint(ctx, params.get("EndpointName"))
        endpoint_key = key(ctx, ENDPOINT, detail["EndpointName"])
        detail["EndpointStatus"] = "Deleting"
        store.update(endpoint_key, detail, "Deleting")
        await manager.delete(endpoint_key)
        return {}

    async def list_endpoints(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        items = filter_sort(store.all(ENDPOINT, ctx.account_id, ctx.region), params,
                            name_key="EndpointName", status_key="EndpointStatus")
        return page(items, params, "Endpoints", lambda d: {
            k: d[k] for k in ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime",
                              "EndpointStatus")})

    return {
        "CreateModel": create_model, "DescribeModel": describe_model,
        "DeleteModel": delete_model, "ListModels": list_models,
        "CreateEndpointConfig": create_endpoint_config,
        "DescribeEndpointConfig": describe_endpoint_config,
        "DeleteEndpointConfig": delete_endpoint_config,
        "ListEndpointConfigs": list_endpoint_configs,
        "CreateEndpoint": create_endpoint, "DescribeEndpoint": describe_endpoint,
        "UpdateEndpoint": update_endpoint, "DeleteEndpoint": delete_endpoint,
        "ListEndpoints": list_endpoints,
    }
