"""The SageMaker training contract, laid out in a per-job directory instead of /opt/ml.

`Layout` is the directory tree AWS documents (input/config/*.json, input/data/<channel>,
model/, output/, output/failure, code/). For script mode (`sagemaker_program`), `argv`
and `environment` reproduce what the framework containers' training toolkit does:
hyperparameters are JSON-decoded where they parse, sorted, and passed as `--name value`;
the SM_* variables describe the job with paths pointing into the job directory.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "algo-1"
GROUP = "homogeneousCluster"
# Hyperparameters the framework containers consume themselves instead of the script.
RESERVED = ("sagemaker_program", "sagemaker_submit_directory", "sagemaker_region",
            "sagemaker_container_log_level", "sagemaker_job_name",
            "sagemaker_enable_cloudwatch_metrics", "sagemaker_estimator_class_name",
            "sagemaker_estimator_module")


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def config(self) -> Path:
        return self.input / "config"

    @property
    def data(self) -> Path:
        return self.input / "data"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def failure(self) -> Path:
        return self.output / "failure"

    @property
    def code(self) -> Path:
        return self.root / "code"

    def create(self) -> None:
        for path in (self.config, self.data, self.model, self.output_data,
                     self.output / "intermediate", self.code):
            path.mkdir(parents=True, exist_ok=True)


def decode(hyperparameters: dict[str, str]) -> dict[str, Any]:
    """Values as the toolkit sees them: JSON where they parse (the SDK JSON-encodes them)."""
    decoded: dict[str, Any] = {}
    for name, value in hyperparameters.items():
        try:
            decoded[name] = json.loads(value)
        except (TypeError, ValueError):
            decoded[name] = value
    return decoded


def user_hyperparameters(decoded: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in decoded.items() if k not in RESERVED}


def host_names(count: int) -> list[str]:
    return [f"algo-{i + 1}" for i in range(max(1, count))]


def resource_config(instance_type: str, current: str = HOST,
                    hosts: list[str] | None = None) -> dict[str, Any]:
    hosts = hosts or [HOST]
    return {"current_host": current, "current_instance_type": instance_type,
            "current_group_name": GROUP, "hosts": hosts,
            "instance_groups": [{"instance_group_name": GROUP, "instance_type": instance_type,
                                 "hosts": hosts}],
            "network_interface_name": "eth0"}


def input_data_config(channels: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for channel in channels:
        entry: dict[str, Any] = {"TrainingInputMode": channel.get("InputMode") or "File",
                                 "S3DistributionType": "FullyReplicated",
                                 "RecordWrapperType": channel.get("RecordWrapperType") or "None"}
        if channel.get("ContentType"):
            entry["ContentType"] = channel["ContentType"]
        config[channel["ChannelName"]] = entry
    return config


def write_config(config_dir: Path, detail: dict[str, Any], current: str = HOST,
                 hosts: list[str] | None = None) -> None:
    """input/config/*.json as host `current` of `hosts` sees them."""
    files = {
        "hyperparameters.json": detail.get("HyperParameters") or {},
        "resourceconfig.json": resource_config(detail["ResourceConfig"]["InstanceType"],
                                               current, hosts),
        "inputdataconfig.json": input_data_config(detail.get("InputDataConfig") or []),
    }
    config_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (config_dir / name).write_text(json.dumps(content, indent=2))


def _arg_value(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)


def arguments(hps: dict[str, Any]) -> list[str]:
    """The toolkit's `to_cmd_args`: sorted names, `--name value` (`-n` for one letter)."""
    args: list[str] = []
    for name in sorted(hps):
        args += [f"--{name}" if len(name) > 1 else f"-{name}", _arg_value(hps[name])]
    return args


def program_argv(layout: Layout, program: str, hps: dict[str, Any]) -> list[str]:
    """Python entry points run with this interpreter; shell scripts with /bin/sh."""
    args = arguments(hps)
    if program.endswith(".sh"):
        return ["/bin/sh", program, *args]
    if program.endswith(".py") or not os.access(layout.code / program, os.X_OK):
        return [sys.executable, program, *args]
    return [str(layout.code / program), *args]


def environment(layout: Layout, detail: dict[str, Any], decoded: dict[str, Any],
                cpus: int, gpus: int, current: str = HOST, hosts: list[str] | None = None,
                config_dir: Path | None = None) -> dict[str, str]:
    """The SM_* variables of the framework containers, plus the job's own Environment."""
    hosts = hosts or [HOST]
    config = config_dir or layout.config
    hps = user_hyperparameters(decoded)
    channels = sorted(c["ChannelName"] for c in detail.get("InputDataConfig") or [])
    instance_type = detail["ResourceConfig"]["InstanceType"]
    program = str(decoded.get("sagemaker_program") or "")
    env: dict[str, str] = {
        "SM_HOSTS": json.dumps(hosts), "SM_CURRENT_HOST": current,
        "SM_CURRENT_INSTANCE_TYPE": instance_type, "SM_CURRENT_INSTANCE_GROUP": GROUP,
        "SM_NETWORK_INTERFACE_NAME": "eth0", "SM_NUM_CPUS": str(cpus), "SM_NUM_GPUS": str(gpus),
        "SM_MODEL_DIR": str(layout.model), "SM_INPUT_DIR": str(layout.input),
        "SM_INPUT_CONFIG_DIR": str(config), "SM_OUTPUT_DIR": str(layout.output),
        "SM_OUTPUT_DATA_DIR": str(layout.output_data),
        "SM_OUTPUT_INTERMEDIATE_DIR": str(layout.output / "intermediate"),
        "SM_CHANNELS": json.dumps(channels), "SM_HPS": json.dumps(hps),
        "SM_USER_ARGS": json.dumps(arguments(hps)), "SM_USER_ENTRY_POINT": program,
        "SM_MODULE_NAME": program.rsplit(".", 1)[0], "SM_MODULE_DIR":
            str(decoded.get("sagemaker_submit_directory") or ""),
        "SM_LOG_LEVEL": str(decoded.get("sagemaker_container_log_level") or 20),
        "SM_FRAMEWORK_PARAMS": "{}", "SM_FRAMEWORK_MODULE": "",
        "SM_RESOURCE_CONFIG": json.dumps(resource_config(instance_type, current, hosts)),
        "SM_INPUT_DATA_CONFIG": json.dumps(input_data_config(detail.get("InputDataConfig")
                                                              or [])),
        "TRAINING_JOB_NAME": detail["TrainingJobName"],
        "TRAINING_JOB_ARN": detail["TrainingJobArn"],
        # The job's own region, as AWS's containers have it (SDK code in a job builds
        # boto3 clients); never the server's credentials.
        "AWS_REGION": str(detail["TrainingJobArn"]).split(":")[3],
        "AWS_DEFAULT_REGION": str(detail["TrainingJobArn"]).split(":")[3],
        "PYTHONUNBUFFERED": "1",
    }
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = str(layout.data / channel)
    for name, value in hps.items():
        env[f"SM_HP_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    env["SM_TRAINING_ENV"] = json.dumps({
        "additional_framework_parameters": {}, "channel_input_dirs":
            {c: str(layout.data / c) for c in channels},
        "current_host": current, "current_instance_type": instance_type, "hosts": hosts,
        "framework_module": "", "hyperparameters": hps, "input_config_dir": str(config),
        "input_data_config": input_data_config(detail.get("InputDataConfig") or []),
        "input_dir": str(layout.input), "is_master": current == hosts[0],
        "job_name": detail["TrainingJobName"], "log_level": 20, "master_hostname": hosts[0],
        "model_dir": str(layout.model), "module_dir": env["SM_MODULE_DIR"],
        "module_name": env["SM_MODULE_NAME"], "network_interface_name": "eth0",
        "num_cpus": cpus, "num_gpus": gpus, "output_data_dir": str(layout.output_data),
        "output_dir": str(layout.output), "output_intermediate_dir":
            str(layout.output / "intermediate"),
        "resource_config": resource_config(instance_type, current, hosts),
        "user_entry_point": program,
    })
    env.update({str(k): str(v) for k, v in (detail.get("Environment") or {}).items()})
    return env
