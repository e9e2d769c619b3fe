"""Server configuration: where data lives, who may sign requests, which region.

Read from an optional TOML file (`kobako serve --config FILE`):

    region = "us-east-1"
    hostnames = ["localhost", "s3.example.internal"]   # bases for virtual-host S3

    [[users]]
    access_key_id = "AKIA..."
    secret_access_key = "..."
    display_name = "alice"
    account_id = "111111111111"

    [runtime]                          # how Batch runs job attempts
    default = "process"                # or "container"; a CE tag kobako:runtime overrides
    container_host = "unix:///run/podman/podman.sock"   # else DOCKER_HOST, docker.sock, ...
    pull_timeout = 300                 # seconds before an image pull counts as failed
    registry_mirror = "mirror.internal:5000"            # tried first for Docker Hub images
    sagemaker = "container"            # SageMaker images run as containers (else: default)

Without a file there is one user, `test` / `test`, in account 000000000000.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kobako.protocol.sigv4 import Credential

DEFAULT_USER = Credential(
    access_key_id="test",
    secret_access_key="test",
    display_name="test",
    account_id="000000000000",
)


RUNTIMES = ("process", "container")


@dataclass
class RuntimeConfig:
    """Which backend runs Batch attempts by default, and how to reach a container engine."""

    default: str = "process"
    container_host: str | None = None
    pull_timeout: float = 300.0
    registry_mirror: str | None = None
    # SageMaker's own choice (see kobako.sagemaker.placement); None: follow `default`.
    sagemaker: str | None = None

    @classmethod
    def parse(cls, raw: dict[str, object]) -> RuntimeConfig:
        out = cls()
        out.default = str(raw.get("default", out.default))
        if out.default not in RUNTIMES:
            raise ValueError(f"[runtime] default must be one of {RUNTIMES}, not {out.default}")
        host = raw.get("container_host")
        out.container_host = str(host) if host else None
        out.pull_timeout = float(str(raw.get("pull_timeout", out.pull_timeout)))
        mirror = raw.get("registry_mirror")
        out.registry_mirror = str(mirror) if mirror else None
        sagemaker = raw.get("sagemaker")
        if sagemaker is not None and str(sagemaker) not in RUNTIMES:
            raise ValueError(f"[runtime] sagemaker must be one of {RUNTIMES}, not {sagemaker}")
        out.sagemaker = str(sagemaker) if sagemaker is not None else None
        return out


@dataclass
class Config:
    data_dir: Path
    region: str = "us-east-1"
    users: dict[str, Credential] = field(default_factory=lambda: {"test": DEFAULT_USER})
    hostnames: list[str] = field(default_factory=lambda: ["localhost", "s3.localhost"])
    fsync: bool = True
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def lookup(self, access_key_id: str) -> Credential | None:
        return self.users.get(access_key_id)

    @classmethod
    def load(cls, data_dir: Path, path: Path | None = None) -> Config:
        config = cls(data_dir=data_dir)
        if path is None:
            return config
        raw = tomllib.loads(path.read_text())
        config.region = str(raw.get("region", config.region))
        config.hostnames = [str(h) for h in raw.get("hostnames", config.hostnames)]
        config.fsync = bool(raw.get("fsync", True))
        config.runtime = RuntimeConfig.parse(dict(raw.get("runtime", {})))
        if "users" in raw:
            config.users = {}
            for entry in raw["users"]:
                user = Credential(
                    access_key_id=str(entry["access_key_id"]),
                    secret_access_key=str(entry["secret_access_key"]),
                    display_name=str(entry.get("display_name", entry["access_key_id"])),
                    account_id=str(entry.get("account_id", "000000000000")),
                )
                config.users[user.access_key_id] = user
        return config
