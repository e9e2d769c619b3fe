"""Batch jobs as real OCI containers: Podman's Docker Engine API on a socket this test
session starts itself, a busybox image built with `podman import`, and kobako servers
whose compute environments are tagged for the container runtime."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from batch_helpers import Env, make_env, wait_for
from conftest import Server, start_server
from podman_helpers import podman_engine

docker = pytest.importorskip("docker")

IMAGE = f"localhost/kobako-test/busybox:{os.getpid()}"  # per session: removed at the end
# CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID NET_BIND_SERVICE: no NET_RAW, MKNOD...
MINIMAL_CAPS = 0x4FB
OOM = "OutOfMemoryError: Container killed due to memory usage"


class _RateLimited(http.server.BaseHTTPRequestHandler):
    """A registry that is up (/v2/ answers) but refuses every manifest with a 429."""

    def _answer(self) -> None:
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = (b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your '
                b'pull rate limit."}]}')
        self.send_response(429)
        self.send_header("Retry-After", "0")  # Podman retries 429s; keep that quick
        self.send_header("RateLimit-Limit", "100;w=21600")
        self.send_header("RateLimit-Remaining", "0;w=21600")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Engine:
    host: str
    client: Any
    registry: str  # "127.0.0.1:PORT"

    def job_containers(self, job_id: str) -> list[Any]:
        return list(self.client.containers.list(
            all=True, filters={"label": f"kobako.job-id={job_id}"}))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    root = tmp_path_factory.mktemp("podman")
    registry = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RateLimited)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    registry_addr = f"127.0.0.1:{registry.server_address[1]}"
    registries = (f'unqualified-search-registries = []\n[[registry]]\n'
                  f'location = "{registry_addr}"\ninsecure = true\n')
    try:
        with podman_engine(root, IMAGE, registries_conf=registries) as podman:
            yield Engine(podman.host, podman.client, registry_addr)
    finally:
        registry.shutdown()
        registry.server_close()


def _config(path: Path, engine: Engine) -> Path:
    path.write_text(f'[runtime]\ndefault = "process"\ncontainer_host = "{engine.host}"\n'
                    "pull_timeout = 30\n")
    return path


@pytest.fixture(scope="module")
def csrv(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("kobako-containers")
    running = start_server(root / "data", config=_config(root / "kobako.toml", engine))
    yield running
    running.stop()
    assert " -> 500 " not in running.log(), "a request was answered with HTTP 500"


def container_env(batch: Any) -> Env:
    """A CE tagged for the container runtime, with its queue."""
    env = make_env(batch, max_vcpus=4)
    ce = batch.describe_compute_environments(computeEnvironments=[env.ce])
    batch.tag_resource(resourceArn=ce["computeEnvironments"][0]["computeEnvironmentArn"],
                       tags={"kobako:runtime": "container"})
    return env


def _definition(env: Env, script: str, memory: int = 64, job: dict[str, Any] | None = None,
                **container: Any) -> str:
    """A definition running `script` in the test image; `job` holds top-level fields."""
    return env.definition(["sh", "-c", script], container={
        "image": IMAGE, "resourceRequirements": [{"type": "VCPU", "value": "0.5"},
                                                 {"type": "MEMORY", "value": str(memory)}],
        **container}, **(job or {}))


def _messages(server: Server, job: dict[str, Any]) -> list[str]:
    logs = server.client("logs")
    events = logs.get_log_events(logGroupName="/aws/batch/job",
                                 logStreamName=job["container"]["logStreamName"],
                                 startFromHead=True)["events"]
    return [str(e["message"]) for e in events]


def test_container_job_exit_code_env_and_logs(csrv: Server, engine: Engine) -> None:
    batch = csrv.client("batch")
    env = container_env(batch)
    ce = batch.describe_compute_environments(computeEnvironments=[env.ce])
    assert ce["computeEnvironments"][0]["tags"] == {"kobako:runtime": "container"}
    script = ('echo "id=$AWS_BATCH_JOB_ID attempt=$AWS_BATCH_JOB_ATTEMPT greeting=$GREETING"; '
              'echo "to stderr" >&2; test -e /etc/kobako-test-image && '
              'echo in-a-container; echo "home=$HOME"; exit "$CODE"')
    name = _definition(env, script, environment=[{"name": "GREETING", "value": "hi"}])
    failed = env.submit(name, containerOverrides={"environment": [{"name": "CODE",
                                                                    "value": "3"}]})
    ok = env.submit(name, containerOverrides={"environment": [{"name": "CODE", "value": "0"}]})
    job = env.wait(failed, timeout=30)
    assert job["status"] == "FAILED", job
    assert job["container"]["exitCode"] == 3
    assert job["statusReason"] == "Essential container in task exited"
    assert env.wait(ok, timeout=30)["status"] == "SUCCEEDED"
    lines = _messages(csrv, job)
    assert f"id={failed} attempt=1 greeting=hi" in lines
    assert "to stderr" in lines and "in-a-container" in lines
    assert engine.job_containers(failed) == [] and engine.job_containers(ok) == []
    # The same definition runs unchanged on a process CE (the image is ignored there).
    process_env = make_env(batch)
    plain = process_env.submit(name, containerOverrides={"environment": [{"name": "CODE",
                                                                           "value": "0"}]})
    job = process_env.wait(plain, timeout=30)
    assert job["status"] == "SUCCEEDED"
    assert "in-a-container" not in _messages(csrv, job)


def test_memory_limit_kill_is_reported(csrv: Server) -> None:
    env = container_env(csrv.client("batch"))
    name = _definition(env, "echo start; x=$(head -c 200000000 /dev/zero | tr '\\0' a); "
                            "echo survived", memory=32)
    job = env.wait(env.submit(name), timeout=40)
    assert job["status"] == "FAILED"
    assert job["container"]["exitCode"] == 137
    assert job["container"]["reason"] == OOM
    assert "survived" not in _messages(csrv, job)


def test_mounts_user_ulimits_and_security(csrv: Server, tmp_path: Path) -> None:
    env = container_env(csrv.client("batch"))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "in.txt").write_text("from the host\n")
    script = ("cat /data/in.txt; echo written > /data/out.txt; id -u; ulimit -n; "
              "touch /rootfs-write 2>/dev/null && echo root-writable; "
              "grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; "
              "echo scratch > /tmpdata/x && cat /tmpdata/x")
    name = _definition(env, script, user="1234", readonlyRootFilesystem=True,
                       volumes=[{"name": "shared", "host": {"sourcePath": str(shared)}}],
                       mountPoints=[{"sourceVolume": "shared", "containerPath": "/data"}],
                       ulimits=[{"name": "nofile", "softLimit": 256, "hardLimit": 512}],
                       linuxParameters={"tmpfs": [{"containerPath": "/tmpdata", "size": 8}],
                                        "sharedMemorySize": 16})
    job = env.wait(env.submit(name), timeout=30)
    lines = _messages(csrv, job)
    assert job["status"] == "SUCCEEDED", (job, lines)
    assert lines[:3] == ["from the host", "1234", "256"]
    assert "root-writable" not in lines and "scratch" in lines
    assert "NoNewPrivs:\t1" in lines
    effective = int(next(line for line in lines if line.startswith("CapEff:")).split()[1], 16)
    assert effective & ~MINIMAL_CAPS == 0, hex(effective)  # Docker: 0 for a non-root user
    assert (shared / "out.txt").read_text() == "written\n"
    assert (shared / "out.txt").stat().st_uid == 1234


def test_timeout_kills_the_container(csrv: Server, engine: Engine) -> None:
    env = container_env(csrv.client("batch"))
    name = _definition(env, "echo started; sleep 30",
                       job={"timeout": {"attemptDurationSeconds": 1}})
    started = time.monotonic()
    job_id = env.submit(name)
    job = env.wait(job_id, timeout=30)
    assert time.monotonic() - started < 15
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    assert job["container"]["exitCode"] == 137 and "reason" not in job["container"]
    assert "started" in _messages(csrv, job)
    assert engine.job_containers(job_id) == []


def test_terminate_job_kills_the_container(csrv: Server, engine: Engine) -> None:
    batch = csrv.client("batch")
    env = container_env(batch)
    job_id = env.submit(_definition(env, "sleep 30"))
    env.wait(job_id, ("RUNNING",), timeout=30)
    batch.terminate_job(jobId=job_id, reason="stop it")
    job = env.wait(job_id, timeout=15)
    assert job["status"] == "FAILED" and job["statusReason"] == "stop it"
    assert engine.job_containers(job_id) == []


def test_pull_error_reports_registry_rate_limit(csrv: Server, engine: Engine) -> None:
    env = container_env(csrv.client("batch"))
    name = _definition(env, "true", image=f"{engine.registry}/x/y:z")
    job = env.wait(env.submit(name), timeout=45)
    assert job["status"] == "FAILED"
    reason = job["attempts"][0]["container"]["reason"]
    assert reason.startswith("CannotPullContainerError: "), reason
    assert "RateLimit-Limit: 100;w=21600" in reason and "RateLimit-Remaining: 0;w=21600" in reason
    assert job["statusReason"] == reason


def test_restart_removes_the_orphan_container(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path / "kobako.toml", engine)
    first = start_server(tmp_path / "data", config=config)
    try:
        env = container_env(first.client("batch"))
        name = _definition(env, 'if [ "$AWS_BATCH_JOB_ATTEMPT" = 1 ]; then sleep 60; fi; '
                                'echo "attempt $AWS_BATCH_JOB_ATTEMPT done"',
                           job={"retryStrategy": {"attempts": 2}})
        job_id = env.submit(name)
        env.wait(job_id, ("RUNNING",), timeout=30)
        orphans = wait_for(lambda: engine.job_containers(job_id), 10, "no container")
    finally:
        first.kill()
    assert orphans[0].reload() is None and orphans[0].status == "running"
    second = start_server(tmp_path / "data", config=config)
    try:
        env.batch = second.client("batch")
        job = env.wait(job_id, timeout=40)
        assert job["status"] == "SUCCEEDED", job
        assert job["attempts"][0]["statusReason"].startswith("Host EC2 (instance kobako)")
        with pytest.raises(docker.errors.NotFound):
            engine.client.containers.get(orphans[0].id)
        assert "attempt 2 done" in _messages(second, job)
        assert "container engine answered" in second.log()
    finally:
        second.stop()


def test_multinode_containers_share_the_main_node_network(csrv: Server) -> None:
    """A 2-node job in containers: the other node reaches the main node's listener at
    AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS (it joins the main node's network)."""
    batch = csrv.client("batch")
    env = container_env(batch)
    script = ('if [ "$AWS_BATCH_JOB_NODE_INDEX" = "$AWS_BATCH_JOB_MAIN_NODE_INDEX" ]; then '
              "nc -l -p 7777 </dev/null; sleep 1; else "
              'until echo hello-from-$AWS_BATCH_JOB_NODE_INDEX | '
              "nc $AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS 7777; do sleep 0.2; done; fi")
    name = f"{env.prefix}-mnp"
    container = {"image": IMAGE, "command": ["sh", "-c", script],
                 "resourceRequirements": [{"type": "VCPU", "value": "0.5"},
                                          {"type": "MEMORY", "value": "64"}]}
    batch.register_job_definition(jobDefinitionName=name, type="multinode", nodeProperties={
        "numNodes": 2, "mainNode": 0,
        "nodeRangeProperties": [{"targetNodes": "0:", "container": container}]})
    job_id = env.submit(name)
    job = env.wait(job_id, timeout=60)
    assert job["status"] == "SUCCEEDED", job
    nodes = batch.describe_jobs(jobs=[f"{job_id}#0", f"{job_id}#1"])["jobs"]
    assert [n["status"] for n in nodes] == ["SUCCEEDED", "SUCCEEDED"]
    # Both ended by themselves: the worker retries until the main node's listener (on
    # its own 127.0.0.1 only in a shared network namespace) took its message.
    assert [n["container"]["exitCode"] for n in nodes] == [0, 0]
