"""Batch GPU jobs on real NVIDIA hardware: skipped unless `nvidia-smi` works here.

A GPU=1 job must see exactly one device (a CUDA computation when torch or cupy is
importable, else `nvidia-smi -L` listing one GPU), and GPU=1 jobs never run more at
once than the host has GPUs (on a one-GPU host: never overlap).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_helpers import make_env
from conftest import Server, start_server
from kobako.batch import gpus


def _gpu_count() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len([line for line in done.stdout.splitlines() if line.startswith("GPU ")]) \
        if done.returncode == 0 else 0


GPUS = _gpu_count()
pytestmark = pytest.mark.skipif(GPUS == 0, reason="no working nvidia-smi on this machine")

_CUDA_CHECK = {
    "torch": "import torch; assert torch.cuda.device_count() == 1, torch.cuda.device_count(); "
             "x = torch.ones(512, 512, device='cuda'); print('cuda', float((x @ x).sum()))",
    "cupy": "import cupy; assert cupy.cuda.runtime.getDeviceCount() == 1; "
            "x = cupy.ones((512, 512)); print('cuda', float((x @ x).sum()))",
}


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(gpus.FAKE_ENV, raising=False)
        server = start_server(tmp_path_factory.mktemp("gpureal") / "data")
    yield server
    server.stop()


def _command() -> tuple[list[str], str]:
    for module, script in _CUDA_CHECK.items():
        if importlib.util.find_spec(module) is not None:
            return [sys.executable, "-c", script], f"cuda {512 * 512 * 512:.1f}"
    # nvidia-smi ignores CUDA_VISIBLE_DEVICES (only a container runtime hides devices),
    # so the process backend's job asks it about the device it was given.
    return ["sh", "-c", 'case "$CUDA_VISIBLE_DEVICES" in *,*|"") exit 3;; esac; '
                        'nvidia-smi -L -i "$CUDA_VISIBLE_DEVICES"'], ""


def _definition(env: Any, command: list[str]) -> str:
    return str(env.definition(command, container={"resourceRequirements": [
        {"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "4096"},
        {"type": "GPU", "value": "1"}]}))


def _messages(server: Server, job: dict[str, Any]) -> list[str]:
    events = server.client("logs").get_log_events(
        logGroupName="/aws/batch/job", startFromHead=True,
        logStreamName=job["container"]["logStreamName"])["events"]
    return [str(e["message"]) for e in events]


def test_gpu_job_sees_exactly_one_device(gpu_server: Server, tmp_path: Path) -> None:
    env = make_env(gpu_server.client("batch"), max_vcpus=16)
    command, expected = _command()
    job = env.wait(env.submit(_definition(env, command)), timeout=300)
    assert job["status"] == "SUCCEEDED", (job, _messages(gpu_server, job))
    lines = _messages(gpu_server, job)
    if expected:
        assert expected in lines, lines
    else:
        assert len([line for line in lines if line.startswith("GPU ")]) == 1, lines


def test_gpu_jobs_never_outnumber_the_gpus(gpu_server: Server) -> None:
    env = make_env(gpu_server.client("batch"), max_vcpus=16)
    name = _definition(env, ["sh", "-c", 'nvidia-smi -L -i "$CUDA_VISIBLE_DEVICES"; sleep 1'])
    ids = [env.submit(name) for _ in range(GPUS + 1)]
    jobs = [env.wait(i, timeout=300) for i in ids]
    assert all(j["status"] == "SUCCEEDED" for j in jobs), jobs
    for job in jobs:
        assert len([m for m in _messages(gpu_server, job) if m.startswith("GPU ")]) == 1
    for job in jobs:
        at = job["startedAt"]
        overlapping = [j for j in jobs if j["startedAt"] <= at < j["stoppedAt"]]
        assert len(overlapping) <= GPUS, "more GPU=1 jobs ran at once than there are GPUs"
