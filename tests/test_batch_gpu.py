"""GPU scheduling on a GPU-less machine: KOBAKO_FAKE_GPUS=N makes the server believe it
has N devices, so device assignment, exclusivity and refusal can be tested anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_helpers import Env, make_env, wait_for
from conftest import Server, start_server
from kobako.batch import gpus
from kobako.batch.engine import Host, gpu_environment


@pytest.fixture(scope="module")
def one_gpu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server_with_gpus(tmp_path_factory.mktemp("gpu1") / "data", 1)


@pytest.fixture(scope="module")
def two_gpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server_with_gpus(tmp_path_factory.mktemp("gpu2") / "data", 2)


def _server_with_gpus(data: Path, count: int) -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(gpus.FAKE_ENV, str(count))
        server = start_server(data)
    yield server
    server.stop()


def _gpu_definition(env: Env, command: list[str], count: int = 1) -> str:
    return env.definition(command, container={"resourceRequirements": [
        {"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "128"},
        {"type": "GPU", "value": str(count)}]})


def _visible(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in job["container"]["environment"]
            if e["name"].endswith("VISIBLE_DEVICES")}


def test_discovery_parses_nvidia_smi_and_honours_the_fake_count(
        monkeypatch: pytest.MonkeyPatch) -> None:
    found = gpus._parse("0, GPU-aaaa, 81559 MiB\n1, GPU-bbbb, 81559 MiB\n")
    assert [(g.index, g.uuid, g.memory_mib) for g in found] == [
        ("0", "GPU-aaaa", 81559), ("1", "GPU-bbbb", 81559)]
    monkeypatch.setenv(gpus.FAKE_ENV, "3")
    assert [g.index for g in gpus.discover()] == ["0", "1", "2"]
    monkeypatch.setenv(gpus.FAKE_ENV, "0")
    assert gpus.discover() == []
    host = Host(cpus=2, memory_mib=1024, gpus=2)
    assert host.gpu_ids == ("0", "1")
    assert gpu_environment(host, ("1",))["CUDA_VISIBLE_DEVICES"] == "1"
    assert gpu_environment(host, ()) == {"CUDA_VISIBLE_DEVICES": "",
                                         "NVIDIA_VISIBLE_DEVICES": "void"}
    assert gpu_environment(Host(cpus=2, memory_mib=1024), ()) == {}


def test_one_gpu_host_runs_gpu_jobs_one_at_a_time(one_gpu: Server) -> None:
    env = make_env(one_gpu.client("batch"), max_vcpus=4)
    name = _gpu_definition(env, ["sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES"; sleep 0.4'])
    ids = [env.submit(name) for _ in range(2)]
    jobs = [env.wait(i) for i in ids]
    assert all(j["status"] == "SUCCEEDED" for j in jobs), jobs
    first, second = sorted(jobs, key=lambda j: j["startedAt"])
    assert first["stoppedAt"] <= second["startedAt"], "two GPU=1 jobs shared the only GPU"
    assert [_visible(j) for j in jobs] == [
        {"CUDA_VISIBLE_DEVICES": "0", "NVIDIA_VISIBLE_DEVICES": "0"}] * 2
    logs = one_gpu.client("logs")
    for job in jobs:
        events = logs.get_log_events(logGroupName="/aws/batch/job", startFromHead=True,
                                     logStreamName=job["container"]["logStreamName"])
        assert [e["message"] for e in events["events"]] == ["0"]
    # A CPU-only job on a GPU host sees no device, and runs beside a GPU job.
    cpu_only = env.definition(["sh", "-c", 'echo "[$CUDA_VISIBLE_DEVICES]"; '
                                           'echo "$NVIDIA_VISIBLE_DEVICES"'])
    job = env.wait(env.submit(cpu_only))
    events = logs.get_log_events(logGroupName="/aws/batch/job", startFromHead=True,
                                 logStreamName=job["container"]["logStreamName"])
    assert [e["message"] for e in events["events"]] == ["[]", "void"]


def test_more_gpus_than_the_host_has_stays_runnable_with_a_reason(one_gpu: Server) -> None:
    env = make_env(one_gpu.client("batch"), max_vcpus=4)
    greedy = env.submit(_gpu_definition(env, ["true"], count=2))
    job = wait_for(lambda: (j := env.describe(greedy)).get("statusReason") and j, 10,
                   "no statusReason for a job asking for 2 GPUs on a 1-GPU host")
    assert job["status"] == "RUNNABLE"
    assert job["statusReason"].startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")
    assert "1 GPUs" in job["statusReason"] and "2 GPUs" in job["statusReason"]
    # It blocks nothing: a job that fits still runs.
    assert env.wait(env.submit(_gpu_definition(env, ["true"])))["status"] == "SUCCEEDED"
    env.batch.cancel_job(jobId=greedy, reason="cannot fit")
    assert env.wait(greedy)["status"] == "FAILED"


def test_two_gpu_host_gives_concurrent_jobs_different_devices(two_gpus: Server) -> None:
    env = make_env(two_gpus.client("batch"), max_vcpus=4)
    name = _gpu_definition(env, ["sleep", "0.5"])
    ids = [env.submit(name) for _ in range(2)]
    jobs = [env.wait(i) for i in ids]
    assert all(j["status"] == "SUCCEEDED" for j in jobs)
    a, b = sorted(jobs, key=lambda j: j["startedAt"])
    assert a["stoppedAt"] > b["startedAt"], "two GPUs, yet the jobs did not overlap"
    devices = sorted(_visible(j)["CUDA_VISIBLE_DEVICES"] for j in jobs)
    assert devices == ["0", "1"]
    both = env.wait(env.submit(_gpu_definition(env, ["true"], count=2)))
    assert both["status"] == "SUCCEEDED"
    assert _visible(both)["NVIDIA_VISIBLE_DEVICES"] == "0,1"
    assert {"type": "GPU", "value": "2"} in both["container"]["resourceRequirements"]
