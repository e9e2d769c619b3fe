"""AWS Batch containerProperties -> Docker Engine API create arguments.

Kept apart from the engine client so the translation (the part that must match what
ECS does on a Batch host) can be read, and tested, without an engine. Security
defaults are stricter than `docker run`: no-new-privileges, and a reduced capability
set unless the job asks to be privileged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kobako.runtime.base import AttemptSpec
from kobako.runtime.lazy import LazyModule

if TYPE_CHECKING:
    import docker
    import docker.errors
    import docker.types
else:
    docker = LazyModule("docker")


JOB_LABEL = "kobako.job-id"
OWNER_LABEL = "kobako.owner"

# Docker's default set minus what batch work does not need (NET_RAW, MKNOD, SYS_CHROOT,
# SETPCAP, SETFCAP, AUDIT_WRITE): enough to chown, switch users and kill children.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
                "NET_BIND_SERVICE")

# Engines apply their own default rlimits only when a container names none, and some
# hosts cannot raise those defaults; naming both keeps every container startable.
DEFAULT_ULIMITS = {"nofile": (1024, 4096), "nproc": (4096, 4096)}

_PERMS = {"READ": "r", "WRITE": "w", "MKNOD": "m"}
_MIB = 1024 * 1024


def ulimits(props: Mapping[str, Any]) -> list[docker.types.Ulimit]:
    limits = dict(DEFAULT_ULIMITS)
    for entry in props.get("ulimits") or []:
        limits[str(entry["name"])] = (int(entry["softLimit"]), int(entry["hardLimit"]))
    return [docker.types.Ulimit(name=name, soft=soft, hard=hard)
            for name, (soft, hard) in limits.items()]


def volumes(props: Mapping[str, Any], scratch: Path) -> dict[str, dict[str, str]]:
    """mountPoints bound to their volumes' host paths; a volume without a host path is
    a fresh per-attempt directory (AWS's Docker-managed scratch volume)."""
    sources: dict[str, Path] = {}
    for volume in props.get("volumes") or []:
        host = (volume.get("host") or {}).get("sourcePath")
        sources[str(volume.get("name"))] = Path(host) if host else scratch / str(volume["name"])
    binds: dict[str, dict[str, str]] = {}
    for mount in props.get("mountPoints") or []:
        name = str(mount.get("sourceVolume"))
        if name not in sources:
            raise ValueError(f"mountPoint names an unknown volume: {name}")
        source = sources[name]
        source.mkdir(parents=True, exist_ok=True)
        mode = "ro" if mount.get("readOnly") else "rw"
        binds[str(source)] = {"bind": str(mount["containerPath"]), "mode": mode}
    return binds


def _devices(linux: Mapping[str, Any]) -> tuple[list[str], bool]:
    out, mknod = [], False
    for device in linux.get("devices") or []:
        perms = device.get("permissions") or ["READ", "WRITE", "MKNOD"]
        mknod = mknod or "MKNOD" in perms
        flags = "".join(_PERMS[p] for p in perms if p in _PERMS)
        host = str(device["hostPath"])
        out.append(f"{host}:{device.get('containerPath') or host}:{flags}")
    return out, mknod


def _tmpfs(linux: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for entry in linux.get("tmpfs") or []:
        options = [f"size={int(entry['size'])}m", *(entry.get("mountOptions") or [])]
        out[str(entry["containerPath"])] = ",".join(options)
    return out


def _environment(spec: AttemptSpec) -> dict[str, str]:
    """The job's variables only (never the server's). With GPUs, the engine exposes just
    the assigned devices, renumbered from 0, so host indices in CUDA_VISIBLE_DEVICES
    would be wrong inside; NVIDIA_VISIBLE_DEVICES names them as the NVIDIA hook wants."""
    env = dict(spec.env)
    if spec.gpus:
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(spec.gpu_ids) or "all"
    return env


def create_kwargs(spec: AttemptSpec, job_id: str, owner: str) -> dict[str, Any]:
    """Keyword arguments for `containers.create` (docker-py) for one attempt."""
    props = spec.properties
    linux: Mapping[str, Any] = props.get("linuxParameters") or {}
    privileged = bool(props.get("privileged"))
    devices, mknod = _devices(linux)
    kwargs: dict[str, Any] = {
        "command": list(spec.argv) or None,
        "environment": _environment(spec),
        "labels": {JOB_LABEL: job_id, OWNER_LABEL: owner},
        "nano_cpus": int(spec.vcpus * 1e9),
        "ulimits": ulimits(props),
        "volumes": volumes(props, spec.workdir / "volumes"),
        "read_only": bool(props.get("readonlyRootFilesystem")),
        "privileged": privileged,
        "security_opt": ["no-new-privileges"],
        "devices": devices,
        "tmpfs": _tmpfs(linux),
        "init": bool(linux.get("initProcessEnabled")),
        "detach": True,
    }
    if not privileged:
        kwargs["cap_drop"] = ["ALL"]
        kwargs["cap_add"] = [*CAPABILITIES, *(["MKNOD"] if mknod else [])]
    if props.get("user"):
        kwargs["user"] = str(props["user"])
    if spec.memory_mib is not None:
        kwargs["mem_limit"] = spec.memory_mib * _MIB
        # No swap unless the job asks for it, so a job over its memory is killed, as on AWS.
        swap = linux.get("maxSwap")
        kwargs["memswap_limit"] = (spec.memory_mib + int(swap or 0)) * _MIB
        if linux.get("swappiness") is not None:
            kwargs["mem_swappiness"] = int(linux["swappiness"])
    if linux.get("sharedMemorySize"):
        kwargs["shm_size"] = int(linux["sharedMemorySize"]) * _MIB
    if spec.gpus:
        request = (docker.types.DeviceRequest(driver="nvidia", device_ids=list(spec.gpu_ids),
                                              capabilities=[["gpu"]])
                   if spec.gpu_ids else
                   docker.types.DeviceRequest(driver="nvidia", count=spec.gpus,
                                              capabilities=[["gpu"]]))
        kwargs["device_requests"] = [request]
    if props.get("entryPoint"):
        kwargs["entrypoint"] = [str(part) for part in props["entryPoint"]]
    if props.get("portMappings"):
        # Published on loopback only: the server talks to it, nobody else should.
        kwargs["ports"] = {f"{int(m['containerPort'])}/tcp": ("127.0.0.1", int(m["hostPort"]))
                           for m in props["portMappings"]}
    if spec.options.get("oci_runtime"):
        kwargs["runtime"] = spec.options["oci_runtime"]
    kwargs.update(network_kwargs(spec.options))
    if spec.options.get("network_mode"):
        # "container:<id>": a multi-node job's other nodes join its main node's network
        # namespace, so the main node's address (127.0.0.1) is theirs too.
        kwargs["network_mode"] = spec.options["network_mode"]
    return kwargs


def network_kwargs(options: Mapping[str, str]) -> dict[str, Any]:
    """A user-defined network to join, under aliases the engine's DNS answers for the
    other containers on it, and a hostname; nothing (the engine's default network)
    unless options name them."""
    kwargs: dict[str, Any] = {}
    network = options.get("network")
    if network:
        aliases = [a for a in options.get("network_aliases", "").split(",") if a]
        kwargs["network"] = network
        if aliases:
            kwargs["networking_config"] = {network: {"Aliases": aliases}}
    if options.get("hostname"):
        kwargs["hostname"] = options["hostname"]
    return kwargs
