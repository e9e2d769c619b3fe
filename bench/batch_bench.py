"""Batch throughput and latency: kobako's AWS Batch beside Slurm, trivial jobs (`true`).

Submits N jobs from several concurrent clients and reports, per scheduler:
jobs/s from the first submit to the last job finished, and submit-to-running latency
(p50, p99). kobako is started here as a `kobako serve` process on a fresh data
directory and driven with boto3; Slurm (slurmctld + slurmd, see bench/README.md) is
driven with `sbatch --wrap true` and measured from its job-completion log.

    python3 bench/batch_bench.py --jobs 2000 --clients 4

This script installs nothing; without a reachable Slurm it reports kobako alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig


@dataclass
class Result:
    name: str
    jobs: int
    seconds: float
    latencies_ms: list[float]
    note: str = ""

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children (the jobs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@contextmanager
def kobako_server(log_level: str) -> Iterator[tuple[str, int]]:
    """A fresh `kobako serve` on a free port and an empty data directory."""
    data = Path(tempfile.mkdtemp(prefix="kobako-bench-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(data / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kobako", "serve", "--port", str(port), "--data-dir",
             str(data / "d"), "--log-level", log_level], stdout=log, stderr=subprocess.STDOUT,
            env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((data / "server.log").read_text()) from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def _client(url: str) -> Any:
    return boto3.client("batch", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=BotoConfig(retries={"max_attempts": 1},
                                          max_pool_connections=4))


def _parallel(clients: int, work: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_kobako(url: str, jobs: int, clients: int, pid: int | None = None,
               rate: float = 0.0) -> Result:
    """`rate` > 0 paces submission (jobs/s, all clients together) to measure latency
    under a load the scheduler can sustain, rather than with a backlog."""
    batch = _client(url)
    ce = batch.create_compute_environment(
        computeEnvironmentName="bench-ce", type="MANAGED",
        computeResources={"type": "EC2", "maxvCpus": 256, "minvCpus": 0,
                          "instanceTypes": ["optimal"], "subnets": ["s"],
                          "securityGroupIds": ["g"], "instanceRole": "r"})
    queue = batch.create_job_queue(jobQueueName="bench-q", priority=1, computeEnvironmentOrder=[
        {"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}])["jobQueueArn"]
    batch.register_job_definition(
        jobDefinitionName="bench-true", type="container",
        containerProperties={"image": "busybox", "command": ["true"], "resourceRequirements": [
            {"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}]})
    sessions = [_client(url) for _ in range(clients)]

    def submit(n: int, ids: list[str], client: Any) -> None:
        began = time.monotonic()
        for i in range(n):
            if rate > 0:
                time.sleep(max(0.0, began + i * clients / rate - time.monotonic()))
            ids.append(client.submit_job(jobName=f"j{i}", jobQueue=queue,
                                         jobDefinition="bench-true")["jobId"])

    warm: list[str] = []
    submit(20, warm, batch)
    _wait_all(batch, warm)
    per_client: list[list[str]] = [[] for _ in range(clients)]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    start = time.time()
    _parallel(clients, lambda i: submit(jobs // clients + (i < jobs % clients),
                                        per_client[i], sessions[i]))
    submitted = time.time()
    ids = [j for chunk in per_client for j in chunk]
    details = _wait_all(batch, ids)
    cpu = (cpu_seconds(pid) - cpu_before) if pid else 0.0
    failed = [d for d in details if d["status"] != "SUCCEEDED"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs did not succeed: {failed[0]}")
    last = max(d["stoppedAt"] for d in details) / 1000
    latencies = [float(d["startedAt"] - d["createdAt"]) for d in details]
    return Result("kobako" if rate <= 0 else f"kobako@{rate:g}/s", len(ids), last - start,
                  latencies,
                  f"submitting took {submitted - start:.2f} s "
                  f"({len(ids) / (submitted - start):.0f} submits/s)"
                  + (f"; server + jobs CPU {cpu * 1000 / len(ids):.2f} ms/job" if pid else ""))


def _wait_all(batch: Any, ids: list[str], timeout: float = 600) -> list[dict[str, Any]]:
    """Every job's final detail. Polls lightly (the last 20 jobs, 4 times a second) so
    that measuring costs the server little, then reads all details once."""
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} jobs unfinished")
        tail = batch.describe_jobs(jobs=pending[-20:])["jobs"]
        if any(j["status"] not in ("SUCCEEDED", "FAILED") for j in tail):
            time.sleep(0.25)
            continue
        for start in range(0, len(pending), 100):
            for job in batch.describe_jobs(jobs=pending[start:start + 100])["jobs"]:
                if job["status"] in ("SUCCEEDED", "FAILED"):
                    done[job["jobId"]] = job
        pending = [j for j in pending if j not in done]
    return [done[j] for j in ids]


# ---------------------------------------------------------------------------- Slurm

def slurm_ready() -> str:
    """'' when sbatch works against a live slurmctld, else why not."""
    if shutil.which("sbatch") is None:
        return "sbatch is not installed"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    if "UP" not in ping.stdout:
        return f"slurmctld is not reachable: {(ping.stdout + ping.stderr).strip()}"
    info = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                          check=False)
    if not any(s.strip().startswith("idle") or s.strip() == "mixed"
               for s in info.stdout.splitlines()):
        return f"no idle Slurm node: {info.stdout.strip()}"
    return ""


def _jobcomp_path() -> Path | None:
    conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                          check=False).stdout
    match = re.search(r"^JobCompLoc\s*=\s*(\S+)", conf, re.M)
    kind = re.search(r"^JobCompType\s*=\s*(\S+)", conf, re.M)
    if match and kind and kind.group(1).endswith("filetxt"):
        return Path(match.group(1))
    return None


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()


def run_slurm(jobs: int, clients: int) -> Result:
    comp = _jobcomp_path()
    ids: list[list[str]] = [[] for _ in range(clients)]
    workdir = Path(tempfile.mkdtemp(prefix="slurm-bench-"))

    def submit(i: int) -> None:
        for _ in range(jobs // clients + (i < jobs % clients)):
            out = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "-D",
                                  str(workdir), "--wrap", "true"],
                                 capture_output=True, text=True, check=True).stdout
            ids[i].append(out.strip().split(";")[0])

    start = time.time()
    _parallel(clients, submit)
    submitted = time.time()
    mine = {j for chunk in ids for j in chunk}
    while True:
        queued = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                                check=True).stdout.split()
        if not mine.intersection(queued):
            break
        time.sleep(0.2)  # squeue costs ~15 ms CPU; Slurm schedules once a second
    end = time.time()
    latencies: list[float] = []
    note = f"submitting took {submitted - start:.2f} s"
    if comp is not None and comp.exists():
        time.sleep(1)
        for line in comp.read_text().splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if fields.get("JobId") in mine and fields.get("SubmitTime"):
                latencies.append(1000 * (_stamp(fields["StartTime"])
                                         - _stamp(fields["SubmitTime"])))
        note += "; latencies from jobcomp/filetxt (whole seconds)"
    shutil.rmtree(workdir, ignore_errors=True)
    return Result("slurm", len(mine), end - start, latencies or [float("nan")], note)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--url", help="an already running kobako (default: start one)")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--skip-slurm", action="store_true")
    parser.add_argument("--skip-kobako", action="store_true")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="also run kobako with submission paced to this many jobs/s")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    results: list[Result] = []
    if args.skip_kobako:
        pass
    elif args.url:
        results.append(run_kobako(args.url, args.jobs, args.clients))
    else:
        with kobako_server(args.log_level) as (url, pid):
            results.append(run_kobako(url, args.jobs, args.clients, pid))
        if args.rate > 0:
            with kobako_server(args.log_level) as (url, pid):
                results.append(run_kobako(url, args.jobs, args.clients, pid, args.rate))
    why = "skipped (--skip-slurm)" if args.skip_slurm else slurm_ready()
    if not why:
        results.append(run_slurm(args.jobs, args.clients))
    print(f"{args.jobs} trivial jobs (`true`), {args.clients} concurrent clients, "
          f"{os.cpu_count()} CPUs")
    print(f"{'scheduler':<10} {'jobs/s':>8} {'p50 ms':>9} {'p99 ms':>9}  notes")
    for r in results:
        print(f"{r.name:<10} {r.rate:>8.1f} {r.pct(50):>9.1f} {r.pct(99):>9.1f}  {r.note}")
    if why:
        print(f"slurm      not measured: {why}")
    if args.json:
        print(json.dumps([{"name": r.name, "jobs_per_s": r.rate, "p50_ms": r.pct(50),
                           "p99_ms": r.pct(99), "note": r.note} for r in results]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
