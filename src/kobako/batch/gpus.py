"""This host's NVIDIA GPUs, which Batch hands to jobs one device at a time.

`nvidia-smi` is the source of truth when it works; KOBAKO_FAKE_GPUS=N pretends there
are N devices (indices 0..N-1) so that the scheduling logic can be tested, and
configured, on a machine without any.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

FAKE_ENV = "KOBAKO_FAKE_GPUS"


@dataclass(frozen=True)
class Gpu:
    index: str
    uuid: str
    memory_mib: int


def _parse(text: str) -> list[Gpu]:
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        memory = parts[2].split()[0]
        gpus.append(Gpu(parts[0], parts[1], int(memory) if memory.isdigit() else 0))
    return gpus


def discover() -> list[Gpu]:
    """The GPUs jobs may be given: fake ones if configured, else nvidia-smi's, else none."""
    fake = os.environ.get(FAKE_ENV)
    if fake is not None and fake.strip():
        count = int(fake)
        return [Gpu(str(i), f"GPU-kobako-fake-{i}", 0) for i in range(max(count, 0))]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "--query-gpu=index,uuid,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return _parse(done.stdout) if done.returncode == 0 else []
