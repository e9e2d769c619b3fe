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
                                       # (or "https://mirror.internal:5000", as daemon.json)
    sagemaker = "container"            # SageMaker images run as containers (else: default)

    [backends.archive]                 # a data backend: another S3 endpoint (AWS, MinIO...)
    endpoint_url = "http://minio.internal:9000"   # omit for AWS itself (by region)
    region = "us-east-1"               # the backend's signing region
    bucket = "kobako-data"             # the backend bucket that holds the bytes
    access_key_id = "..."              # omit both keys for botocore's usual chain
    secret_access_key = "..."
    prefix = "kobako/"                 # optional: prepended to every backend key
    addressing_style = "auto"          # or "path" / "virtual"
    max_attempts = 3                   # botocore tries per call (standard retry mode)

A bucket created with `CreateBucketConfiguration.LocationConstraint = "archive"` keeps
its objects' bytes in that backend (one backend object per blob, named by blob id,
never by key) and its metadata here, like every bucket; a bucket created with a
region name (or none) keeps its bytes in the data directory. A backend's name is
stored with its buckets and blobs: keep it once buckets use it.

Without a file there is one user, `test` / `test`, in account 000000000000.
"""

from __future__ import annotations

import re
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
ADDRESSING_STYLES = ("auto", "path", "virtual")
# A backend's name is a LocationConstraint value and the first part of its blob ids.
_BACKEND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")


@dataclass
class BackendConfig:
    """Another S3-compatible endpoint that holds the bytes of buckets created on it."""

    name: str
    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    prefix: str = ""
    addressing_style: str = "auto"
    max_attempts: int = 3

    @classmethod
    def parse(cls, name: str, raw: dict[str, object]) -> BackendConfig:
        if not _BACKEND_NAME.match(name):
            raise ValueError(f"[backends.{name}]: a backend name is 1-63 letters, digits, "
                             "'.', '_' or '-', starting with a letter or digit")
        if not raw.get("bucket"):
            raise ValueError(f"[backends.{name}] needs `bucket`, the bucket that holds the bytes")

        def text(key: str) -> str | None:
            value = raw.get(key)
            return str(value) if value else None

        out = cls(name=name, bucket=str(raw["bucket"]), endpoint_url=text("endpoint_url"),
                  region=text("region") or "us-east-1", access_key_id=text("access_key_id"),
                  secret_access_key=text("secret_access_key"), prefix=text("prefix") or "",
                  addressing_style=text("addressing_style") or "auto",
                  max_attempts=int(str(raw.get("max_attempts", 3))))
        if (out.access_key_id is None) != (out.secret_access_key is None):
            raise ValueError(f"[backends.{name}]: give both access_key_id and "
                             "secret_access_key, or neither")
        if out.addressing_style not in ADDRESSING_STYLES:
            raise ValueError(f"[backends.{name}] addressing_style must be one of "
                             f"{ADDRESSING_STYLES}, not {out.addressing_style}")
        if out.max_attempts < 1:
            raise ValueError(f"[backends.{name}] max_attempts must be at least 1")
        return out


def _mirror_prefix(value: object) -> str | None:
    """The mirror as an image-reference prefix: "host[:port]", or with a path for a
    proxy project ("harbor.internal/dockerhub"). Docker's daemon.json spells mirrors
    as URLs ("https://mirror.gcr.io"); an engine API pull takes no scheme (the
    engine's own registries config says http or https), so it is dropped."""
    prefix = str(value or "").strip().removeprefix("https://").removeprefix("http://")
    return prefix.rstrip("/") or None


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
        out.registry_mirror = _mirror_prefix(raw.get("registry_mirror"))
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
    # PutObject bodies of at most this many bytes live in SQLite (kobako.store.inline).
    inline_bytes: int = 64 * 1024
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    backends: dict[str, BackendConfig] = field(default_factory=dict)

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
        inline_bytes = raw.get("inline_bytes", config.inline_bytes)
        if (not isinstance(inline_bytes, int) or isinstance(inline_bytes, bool)
                or not 0 <= inline_bytes <= 1024 * 1024):
            raise ValueError("inline_bytes must be a whole number of bytes from 0 to 1048576")
        config.inline_bytes = inline_bytes
        config.runtime = RuntimeConfig.parse(dict(raw.get("runtime", {})))
        config.backends = {name: BackendConfig.parse(name, dict(table))
                           for name, table in dict(raw.get("backends", {})).items()}
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
