"""Container Batch jobs: start latency and throughput beside the process runtime and
beside the engine alone, in one run.

Starts its own Podman Docker-API service in a temporary directory (runc, cgroupfs: see
/work/shared/notes/containers.md), builds a busybox image with `podman import`, and a
`kobako serve` with `[runtime] container_host` on that socket. Then, N trivial jobs
(`true`) each way:

- kobako Batch, process CE (the default runtime);
- kobako Batch, container CE (tag kobako:runtime=container), same job definition;
- `podman run --rm IMAGE true` alone (the CLI: create, start, wait, remove);
- the Docker API alone on the same socket (docker-py create, start, wait, remove:
  the calls kobako makes, without kobako).

Latency runs jobs one at a time (submit, wait, next): per job, createdAt -> stoppedAt
for kobako (the container is removed before stoppedAt), wall time for the others.
Throughput submits all N at once (kobako) or runs them `--parallel` at a time (others).

    apt-get install -y podman runc fuse-overlayfs busybox-static   # once, as root
    python3 bench/container_bench.py --jobs 30 --parallel 4

This script installs nothing; without podman and busybox it says so and exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import docker
from botocore.config import Config as BotoConfig

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
IMAGE = f"localhost/kobako-bench/busybox:{os.getpid()}"


@dataclass
class Row:
    name: str
    latencies_ms: list[float]
    throughput: float  # jobs/s
    note: str = ""

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies_ms)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_socket(path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        with socket.socket(socket.AF_UNIX if path.startswith("/") else socket.AF_INET) as s:
            try:
                s.connect(path if path.startswith("/") else ("127.0.0.1", int(path)))
                return
            except OSError:
                pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace")[-3000:])
        time.sleep(0.05)


@contextmanager
def podman_service(root: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(unix:// host, env for `podman`), with IMAGE built; all removed at the end."""
    (root / "containers.conf").write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(root / "containers.conf")}
    rootfs = root / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    shutil.copy(str(shutil.which("busybox")), rootfs / "bin" / "busybox")
    for tool in ("sh", "true", "echo"):
        (rootfs / "bin" / tool).symlink_to("busybox")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(root / "rootfs.tar"), "."], check=True)
    subprocess.run(["podman", "import", str(root / "rootfs.tar"), IMAGE], env=env, check=True,
                   capture_output=True)
    sock = root / "podman.sock"
    with open(root / "podman.log", "wb") as log:
        proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                                env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=root)
    try:
        _wait_socket(str(sock), proc, root / "podman.log")
        yield f"unix://{sock}", env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        subprocess.run(["podman", "rmi", "-f", IMAGE], env=env, capture_output=True)


@contextmanager
def kobako_server(root: Path, host: str) -> Iterator[str]:
    """`kobako serve` on a free port with the container engine at `host`."""
    config = root / "kobako.toml"
    config.write_text(f'[runtime]\ndefault = "process"\ncontainer_host = "{host}"\n')
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(root / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kobako", "serve", "--port", str(port), "--data-dir",
             str(root / "data"), "--config", str(config), "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_socket(str(port), proc, root / "server.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Batch:
    """One CE + queue per runtime and a definition running `true` in IMAGE."""

    def __init__(self, url: str) -> None:
        self.client = boto3.client("batch", endpoint_url=url, region_name="us-east-1",
                                   aws_access_key_id="test", aws_secret_access_key="test",
                                   config=BotoConfig(retries={"max_attempts": 1},
                                                     max_pool_connections=8))
        self.queues = {name: self._queue(name) for name in ("process", "container")}
        self.client.register_job_definition(
            jobDefinitionName="bench-true", type="container",
            containerProperties={"image": IMAGE, "command": ["true"], "resourceRequirements": [
                {"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "32"}]})

    def _queue(self, runtime: str) -> str:
        ce = self.client.create_compute_environment(
            computeEnvironmentName=f"bench-{runtime}", type="MANAGED",
            computeResources={"type": "EC2", "maxvCpus": 256, "minvCpus": 0,
                              "instanceTypes": ["optimal"], "subnets": ["s"],
                              "securityGroupIds": ["g"], "instanceRole": "r"},
            tags={"kobako:runtime": runtime})
        return str(self.client.create_job_queue(
            jobQueueName=f"bench-{runtime}-q", priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment":
                                      ce["computeEnvironmentArn"]}])["jobQueueArn"])

    def submit(self, runtime: str, n: int = 1) -> list[str]:
        return [str(self.client.submit_job(jobName=f"j{i}", jobQueue=self.queues[runtime],
                                           jobDefinition="bench-true")["jobId"])
                for i in range(n)]

    def wait(self, ids: list[str], timeout: float = 600) -> list[dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(done) < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(ids) - len(done)} jobs unfinished")
            pending = [j for j in ids if j not in done]
            for start in range(0, len(pending), 100):
                for job in self.client.describe_jobs(jobs=pending[start:start + 100])["jobs"]:
                    if job["status"] in ("SUCCEEDED", "FAILED"):
                        done[job["jobId"]] = job
            if len(done) < len(ids):
                time.sleep(0.02 if len(ids) == 1 else 0.25)
        failed = [d for d in done.values() if d["status"] != "SUCCEEDED"]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs failed: {failed[0]}")
        return [done[j] for j in ids]

    def measure(self, runtime: str, jobs: int) -> Row:
        self.wait(self.submit(runtime, 3))  # warm-up: first-use costs out of the figures
        latencies = []
        for _ in range(jobs):
            job = self.wait(self.submit(runtime))[0]
            latencies.append(float(job["stoppedAt"] - job["createdAt"]))
        start = time.time()
        details = self.wait(self.submit(runtime, jobs))
        seconds = max(d["stoppedAt"] for d in details) / 1000 - start
        starts = [float(d["startedAt"] - d["createdAt"]) for d in details]
        return Row(f"kobako {runtime} job", latencies, jobs / seconds,
                   f"submit->RUNNING median {statistics.median(starts):.0f} ms under load")


def _timed(jobs: int, parallel: int, one: Callable[[], None]) -> Row:
    one()
    latencies = []
    for _ in range(jobs):
        began = time.perf_counter()
        one()
        latencies.append((time.perf_counter() - began) * 1000)
    began = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda _: one(), range(jobs)))
    return Row("", latencies, jobs / (time.perf_counter() - began))


def podman_run(env: dict[str, str], jobs: int, parallel: int) -> Row:
    def one() -> None:
        subprocess.run(["podman", "run", "--rm", IMAGE, "true"], env=env, check=True,
                       capture_output=True)

    row = _timed(jobs, parallel, one)
    row.name = "podman run --rm alone"
    return row


def docker_api(host: str, jobs: int, parallel: int) -> Row:
    client = docker.DockerClient(base_url=host, version="auto", timeout=60, max_pool_size=16)

    phases: dict[str, list[float]] = {"create": [], "start": [], "wait": [], "remove": []}

    def one() -> None:
        marks = [time.perf_counter()]
        container = client.containers.create(IMAGE, ["true"], detach=True)
        marks.append(time.perf_counter())
        client.api.start(container.id)
        marks.append(time.perf_counter())
        code = client.api.wait(container.id)["StatusCode"]
        marks.append(time.perf_counter())
        client.api.remove_container(container.id, force=True)
        marks.append(time.perf_counter())
        for values, began, ended in zip(phases.values(), marks, marks[1:], strict=False):
            values.append((ended - began) * 1000)
        if code != 0:
            raise RuntimeError(f"exit {code}")

    try:
        row = _timed(jobs, parallel, one)
    finally:
        client.close()
    row.name = "Docker API alone"
    row.note = "median ms " + ", ".join(f"{name} {statistics.median(values):.0f}"
                                        for name, values in phases.items())
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=30, help="jobs per way, each phase")
    parser.add_argument("--parallel", type=int, default=4,
                        help="concurrency of the engine-alone throughput runs")
    args = parser.parse_args()
    missing = [tool for tool in ("podman", "busybox") if not shutil.which(tool)]
    if missing:
        print(f"missing {', '.join(missing)}: apt-get install -y podman runc fuse-overlayfs "
              "busybox-static", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="kobako-container-bench-"))
    load = os.getloadavg()[0]
    try:
        with podman_service(root) as (host, env), kobako_server(root, host) as url:
            batch = Batch(url)
            rows = [batch.measure("process", args.jobs), batch.measure("container", args.jobs),
                    podman_run(env, args.jobs, args.parallel),
                    docker_api(host, args.jobs, args.parallel)]
            version = subprocess.run(["podman", "--version"], capture_output=True,
                                     text=True).stdout.strip()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.jobs} jobs (`true`) per way; {os.cpu_count()} CPUs; {version}; "
          f"load {load:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'way':<24} {'median ms':>10} {'p90 ms':>8} {'jobs/s':>8}  notes")
    for r in rows:
        print(f"{r.name:<24} {r.median:>10.0f} {r.pct(90):>8.0f} {r.throughput:>8.2f}  {r.note}")
    process, container, podman = rows[0], rows[1], rows[2]
    overhead = container.median - process.median
    print(f"container job / podman run alone (median latency): "
          f"{container.median / podman.median:.2f}x; container minus process job: "
          f"{overhead:.0f} ms = {overhead / podman.median:.2f}x podman run; "
          f"per-job time under load (1 / jobs/s): container "
          f"{1000 / container.throughput:.0f} ms vs podman run "
          f"{1000 / podman.throughput:.0f} ms = "
          f"{podman.throughput / container.throughput:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
