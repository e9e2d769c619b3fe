"""What the container runtime asks the engine for: GPUs by device id, the OCI runtime a
compute environment pins, and the sandbox defaults. The engine side of these is tested
with Podman in test_containers.py; a real NVIDIA GPU is needed to see a device request
honoured, so here the request itself is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

docker = pytest.importorskip("docker")

from kobako.runtime.base import AttemptSpec  # noqa: E402
from kobako.runtime.container_args import create_kwargs  # noqa: E402


def _spec(tmp_path: Path, **kwargs: Any) -> AttemptSpec:
    return AttemptSpec(argv=["nvidia-smi"], env={"A": "1"}, workdir=tmp_path, image="img",
                       **kwargs)


def test_gpu_job_requests_exactly_its_devices(tmp_path: Path) -> None:
    made = create_kwargs(_spec(tmp_path, gpus=2, gpu_ids=("1", "3")), "job-1", "owner")
    [request] = made["device_requests"]
    assert request["Driver"] == "nvidia"
    assert request["DeviceIDs"] == ["1", "3"]
    assert request["Capabilities"] == [["gpu"]]
    assert made["environment"]["NVIDIA_VISIBLE_DEVICES"] == "1,3"


def test_gpu_count_without_ids_and_no_gpu_no_request(tmp_path: Path) -> None:
    [request] = create_kwargs(_spec(tmp_path, gpus=1), "j", "o")["device_requests"]
    assert request["Count"] == 1 and not request.get("DeviceIDs")
    assert "device_requests" not in create_kwargs(_spec(tmp_path), "j", "o")


def test_oci_runtime_is_passed_through_and_sandbox_defaults(tmp_path: Path) -> None:
    made = create_kwargs(_spec(tmp_path, options={"oci_runtime": "runsc"}), "j", "o")
    assert made["runtime"] == "runsc"
    assert "runtime" not in create_kwargs(_spec(tmp_path), "j", "o")
    assert "no-new-privileges" in " ".join(made.get("security_opt") or [])
    assert not made.get("privileged")
