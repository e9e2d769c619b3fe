"""Training-job preparation beyond the contract: a source dir's requirements.txt,
checkpoints, and the per-host environment of a multi-instance job.

requirements.txt is installed as the framework containers do, but into a per-job
directory (pip --target) put on PYTHONPATH, so jobs never change the server's own
Python. pip gets one short try: offline, the job goes on with what is installed and
says so in its log. Checkpoints (CheckpointConfig) are copied from S3 before the
algorithm starts and back after it ends, whatever the outcome, as AWS's continuous
sync leaves them. Hosts algo-1..algo-N each run one process; the torch.distributed
variables make rank 0 (algo-1) the master on 127.0.0.1. Under the container runtime
each host is one container of the image (`docker run <image> train`) with the job
directory mounted at /opt/ml; a multi-host job's containers share a network of their
own on which each is host algo-N (hostname and DNS alias), so the master is `algo-1`,
as on AWS.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kobako.sagemaker import placement
from kobako.sagemaker.serving import free_port

PIP_TIMEOUT_S = 300.0
OPT_ML = "/opt/ml"
DEFAULT_CHECKPOINTS = "/opt/ml/checkpoints"
# The master's port when each host is a container with a network namespace of its own:
# the one the SageMaker PyTorch training toolkit sets (any port is free there).
CONTAINER_MASTER_PORT = 7777


async def install_requirements(code: Path, target: Path, say: Callable[[str], None]
                               ) -> Path | None:
    """pip install -r code/requirements.txt --target target; target, or None if skipped."""
    requirements = code / "requirements.txt"
    if not requirements.is_file():
        return None
    say(f"kobako: installing {requirements.name} into {target}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", "install", "--target", str(target), "-r",
        str(requirements), "--disable-pip-version-check", "--no-input", "--retries", "0",
        "--timeout", "10", cwd=code, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PIP_NO_INPUT": "1"})
    try:
        output, _ = await asyncio.wait_for(process.communicate(), PIP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        say(f"kobako: pip did not finish within {PIP_TIMEOUT_S:g} s; skipping "
            "requirements.txt and training with the packages already installed")
        return None
    for line in output.decode(errors="replace").splitlines():
        say(line)
    if process.returncode != 0:
        say(f"kobako: pip could not install requirements.txt (exit {process.returncode}; "
            "offline, or a package is unavailable); skipping it and training with the "
            "packages already installed")
        return None
    return target


def checkpoint_local(root: Path, local_path: str | None) -> Path:
    """Where CheckpointConfig.LocalPath lives in the job directory (`root` is /opt/ml)."""
    path = (local_path or DEFAULT_CHECKPOINTS).rstrip("/")
    if path == OPT_ML or path.startswith(OPT_ML + "/"):
        relative = path[len(OPT_ML):].strip("/")
    else:
        relative = "fs/" + path.strip("/")
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"CheckpointConfig.LocalPath {local_path} must not contain '..'")
    return root.joinpath(*parts)


def rewrite(args: list[str], mapping: dict[str, Path]) -> list[str]:
    """Container paths (mapping keys) in arguments replaced by their host directories;
    matched at an argument's start or after = : , a quote or a space."""
    names = sorted((k.rstrip("/") for k in mapping), key=len, reverse=True)
    if not names:
        return args
    pattern = re.compile(rf"(?:^|(?<=[=:,\s'\"]))({'|'.join(re.escape(n) for n in names)})"
                         rf"(?=/|$|[=:,;\s'\"])")
    table = {k.rstrip("/"): str(v) for k, v in mapping.items()}
    return [pattern.sub(lambda m: table[m.group(1)], a) for a in args]


def container_argv(algorithm: dict[str, Any]) -> list[str]:
    """The command of a training container: ContainerArguments, else `train` (AWS's
    `docker run <image> train`) unless ContainerEntrypoint replaces the entrypoint."""
    args = [str(a) for a in algorithm.get("ContainerArguments") or []]
    if args or algorithm.get("ContainerEntrypoint"):
        return args
    return ["train"]


def cluster_options(job_id: str, host: str, network: str | None) -> dict[str, str]:
    """Container options of one host: the job's label, and on a multi-host job's
    network the host's name as hostname and as the alias the others resolve."""
    options = {"job_id": job_id}
    if network is not None:
        options.update(network=network, network_aliases=host, hostname=host)
    return options


def container_properties(root: Path, rank: int, host: str, algorithm: dict[str, Any],
                         checkpoints: dict[str, Any]) -> dict[str, Any]:
    """Mounts of one training container: the job directory at /opt/ml, this host's
    config (hosts after the first have their own), a checkpoint path outside /opt/ml."""
    mounts = {root: OPT_ML}
    if rank:
        mounts[root / "hosts" / host / "config"] = f"{OPT_ML}/input/config"
    local_path = str(checkpoints.get("LocalPath") or DEFAULT_CHECKPOINTS).rstrip("/")
    if checkpoints.get("S3Uri") and not (local_path + "/").startswith(OPT_ML + "/"):
        mounts[checkpoint_local(root, local_path)] = local_path
    entry = [str(a) for a in algorithm.get("ContainerEntrypoint") or []]
    return placement.container_properties(root, mounts, entrypoint=entry or None)


def process_binds(root: Path, rank: int, config_dir: Path) -> tuple[tuple[Path, str], ...]:
    """What a training process sees at /opt/ml (where the process runtime may bind):
    the job directory, and hosts after the first their own input/config."""
    binds = [(root, OPT_ML)]
    if rank:
        binds.append((config_dir, f"{OPT_ML}/input/config"))
    return tuple(binds)


def python_first(path: str) -> str:
    """PATH with this interpreter's directory first: under the process runtime kobako's
    Python plays the image's, so `python3` in a job's shell scripts (the SDK's
    sm_train.sh among them) is the one with the job's packages."""
    here = os.path.dirname(sys.executable)
    return os.pathsep.join([here, *(p for p in path.split(os.pathsep) if p and p != here)])


def distributed_env(rank: int, hosts: list[str], port: int, master: str = "127.0.0.1"
                    ) -> dict[str, str]:
    """What torch.distributed's env:// init (and most launchers) read."""
    return {"MASTER_ADDR": master, "MASTER_PORT": str(port),
            "WORLD_SIZE": str(len(hosts)), "RANK": str(rank), "LOCAL_RANK": "0",
            "LOCAL_WORLD_SIZE": "1", "NODE_RANK": str(rank), "GROUP_RANK": str(rank)}


def master_port() -> int:
    return free_port()


def stream(job: str, host: str) -> str:
    return f"{job}/{host}-{int(time.time())}"
