"""Where a SageMaker container runs: as local processes, or as the real image.

With the process runtime (the default) kobako plays the framework containers itself
(script mode, `model_server.py`), and paths under /opt/ml are laid out in a per-job
directory. With the container runtime, a job whose image is a real image reference
runs that image as AWS does (`docker run <image> train`, `serve` on port 8080) with
the job directory mounted at /opt/ml. The container runtime is chosen by
`[runtime] sagemaker = "container"` in the config, else by `[runtime] default`, and
the environment variable KOBAKO_SAGEMAKER_RUNTIME overrides both. Images named
`kobako/...` (kobako's stand-ins for the framework images), local directories and
jobs without an image always run as processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "KOBAKO_SAGEMAKER_RUNTIME"
OPT_ML = "/opt/ml"


@dataclass(frozen=True)
class Placement:
    runtime: str  # "process" or "container"
    image: str | None = None


class Placer:
    def __init__(self, configured: str = "process") -> None:
        self.configured = configured

    @property
    def default(self) -> str:
        chosen = os.environ.get(ENV) or self.configured
        return chosen if chosen in ("process", "container") else "process"

    def choose(self, image: str | None) -> Placement:
        if self.default != "container" or not image or image.startswith("kobako/") \
                or Path(image).is_dir():
            return Placement("process", image)
        return Placement("container", image)


def container_properties(workdir: Path, mounts: dict[Path, str],
                         ports: dict[int, int] | None = None,
                         entrypoint: list[str] | None = None) -> dict[str, Any]:
    """Batch-style containerProperties for the container runtime: bind mounts, published
    ports (container port -> host port on 127.0.0.1) and an entrypoint override."""
    volumes, points = [], []
    for index, (source, target) in enumerate(mounts.items()):
        source.mkdir(parents=True, exist_ok=True)
        volumes.append({"name": f"v{index}", "host": {"sourcePath": str(source)}})
        points.append({"sourceVolume": f"v{index}", "containerPath": target,
                       "readOnly": False})
    props: dict[str, Any] = {"volumes": volumes, "mountPoints": points}
    if ports:
        props["portMappings"] = [{"containerPort": c, "hostPort": h} for c, h in ports.items()]
    if entrypoint:
        props["entryPoint"] = list(entrypoint)
    return props
