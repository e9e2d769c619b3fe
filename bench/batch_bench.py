"""Batch throughput and latency: kobako's AWS Batch beside Slurm, trivial jobs (`true`).

Submits N jobs from several concurrent clients and reports, per scheduler:
jobs/s from the first submit to the last job finished, and submit-to-running latency
(p50, p99). kobako is started here as a `kobako serve` process on a fresh data
directory; Slurm (slurmctld + slurmd, see bench/README.md) is driven with
`sbatch --wrap true` and measured from its job-completion log.

    python3 bench/batch_bench.py --jobs 2000 --clients 4
    python3 bench/batch_bench.py --jobs 2000 --clients 4 --client boto3

The bar is the server's throughput, and the machine has 2 cores, so by default the
SubmitJob calls come from a lean client (`--client raw`): C forked processes, each
with one keep-alive connection (`RawConnection` from s3_bench.py) and a SigV4 signer
that caches its signing key and signs the JSON body's SHA-256 the way botocore does
(checked against botocore's `SigV4Auth` at start). `--client boto3` submits from C
boto3 clients in threads of one process instead, as the first version of this script
did: boto3 then costs more CPU per call than the server.

This script installs nothing; without a reachable Slurm it reports kobako alone.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import multiprocessing
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

# bench/ is not a package: s3_bench.py is found next to this script.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from s3_bench import RawConnection

ACCESS_KEY = SECRET_KEY = "test"
REGION = "us-east-1"


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


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user + system CPU of a process, of its reaped children: the jobs), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


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


class JsonSigner:
    """SigV4 for a JSON service, as botocore's `SigV4Auth` signs it: content-type, host
    and x-amz-date, and the body's SHA-256; the signing key is cached per day.
    `check_signer` proves it agrees with botocore."""

    SIGNED = "content-type;host;x-amz-date"
    CONTENT_TYPE = "application/json"

    def __init__(self, service: str = "batch") -> None:
        self.service = service
        self._day = ""
        self._key = b""

    def _signing_key(self, day: str) -> bytes:
        if day != self._day:
            key = f"AWS4{SECRET_KEY}".encode()
            for part in (day, REGION, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day, self._key = day, key
        return self._key

    def headers(self, method: str, path: str, host: str, body: bytes,
                amz_date: str | None = None) -> dict[str, str]:
        amz_date = amz_date or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = amz_date[:8]
        canonical = (f"{method}\n{path}\n\ncontent-type:{self.CONTENT_TYPE}\nhost:{host}\n"
                     f"x-amz-date:{amz_date}\n\n{self.SIGNED}\n"
                     f"{hashlib.sha256(body).hexdigest()}")
        scope = f"{day}/{REGION}/{self.service}/aws4_request"
        to_sign = (f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")
        signature = hmac.new(self._signing_key(day), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        return {
            "Host": host,
            "Content-Type": self.CONTENT_TYPE,
            "X-Amz-Date": amz_date,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
                             f"SignedHeaders={self.SIGNED}, Signature={signature}",
        }


def check_signer() -> None:
    """Fail fast if the lean signer disagrees with botocore's SigV4Auth."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = "127.0.0.1:4566"
    body = json.dumps({"jobName": "j1", "jobQueue": "arn:aws:batch:q",
                       "jobDefinition": "bench-true"}).encode()
    request = AWSRequest(method="POST", url=f"http://{host}/v1/submitjob", data=body,
                         headers={"Host": host, "Content-Type": JsonSigner.CONTENT_TYPE})
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "batch", REGION).add_auth(request)
    ours = JsonSigner().headers("POST", "/v1/submitjob", host, body,
                                request.headers["X-Amz-Date"])["Authorization"]
    if request.headers["Authorization"] != ours:
        raise SystemExit(f"signer disagrees with botocore:\n  botocore "
                         f"{request.headers['Authorization']}\n  ours     {ours}")


@dataclass
class Submitter:
    """One raw client's share of the submissions, run in its own process."""

    port: int
    queue: str
    index: int
    clients: int
    count: int
    start_at: float  # time.monotonic(), shared by the forked processes
    rate: float

    def __call__(self, pipe: Any) -> None:
        signer = JsonSigner()
        conn = RawConnection(self.port)
        host = f"127.0.0.1:{self.port}"
        ids: list[str] = []
        error = ""
        while time.monotonic() < self.start_at:
            time.sleep(0.0005)
        cpu0 = time.process_time()
        for i in range(self.count):
            if self.rate > 0:
                due = self.start_at + (i * self.clients + self.index) / self.rate
                time.sleep(max(0.0, due - time.monotonic()))
            body = json.dumps({"jobName": f"j{self.index}-{i}", "jobQueue": self.queue,
                               "jobDefinition": "bench-true"}).encode()
            status, data = conn.request("POST", "/v1/submitjob",
                                        signer.headers("POST", "/v1/submitjob", host, body),
                                        body)
            if status != 200:
                error = f"SubmitJob -> {status}: {data[:300]!r}"
                break
            ids.append(json.loads(data)["jobId"])
        conn.close()
        pipe.send((ids, time.process_time() - cpu0, error))


def _submit_raw(port: int, queue: str, jobs: int, clients: int, rate: float
                ) -> tuple[list[str], float, float, float]:
    """(job ids, wall start, wall end of submitting, client CPU s) from forked raw clients."""
    ctx = multiprocessing.get_context("fork")
    start_at = time.monotonic() + 0.3
    pipes, processes = [], []
    for i in range(clients):
        ours, theirs = ctx.Pipe(duplex=False)
        work = Submitter(port, queue, i, clients, jobs // clients + (i < jobs % clients),
                         start_at, rate)
        process = ctx.Process(target=work, args=(theirs,), daemon=True)
        process.start()
        pipes.append(ours)
        processes.append(process)
    start = time.time() + (start_at - time.monotonic())
    ids: list[str] = []
    cpu = 0.0
    errors = []
    for pipe in pipes:
        mine, used, error = pipe.recv()
        ids += mine
        cpu += used
        if error:
            errors.append(error)
    submitted = time.time()
    for process in processes:
        process.join()
    if errors:
        raise RuntimeError(errors[0])
    return ids, start, submitted, cpu


def _submit_boto3(url: str, queue: str, jobs: int, clients: int, rate: float
                  ) -> tuple[list[str], float, float, float]:
    """The same from boto3 clients in threads of this process."""
    sessions = [_client(url) for _ in range(clients)]
    per_client: list[list[str]] = [[] for _ in range(clients)]

    def submit(i: int) -> None:
        began = time.monotonic()
        for n in range(jobs // clients + (i < jobs % clients)):
            if rate > 0:
                time.sleep(max(0.0, began + n * clients / rate - time.monotonic()))
            per_client[i].append(sessions[i].submit_job(
                jobName=f"j{i}-{n}", jobQueue=queue, jobDefinition="bench-true")["jobId"])

    cpu0 = time.process_time()
    start = time.time()
    _parallel(clients, submit)
    return ([j for chunk in per_client for j in chunk], start, time.time(),
            time.process_time() - cpu0)


def run_kobako(url: str, jobs: int, clients: int, pid: int | None = None,
               rate: float = 0.0, client: str = "raw") -> Result:
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
    warm = [batch.submit_job(jobName=f"w{i}", jobQueue=queue, jobDefinition="bench-true")[
        "jobId"] for i in range(20)]
    _wait_all(batch, warm)
    cpu_before = cpu_seconds(pid) if pid else (0.0, 0.0)
    if client == "raw":
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        ids, start, submitted, client_cpu = _submit_raw(port, queue, jobs, clients, rate)
    else:
        ids, start, submitted, client_cpu = _submit_boto3(url, queue, jobs, clients, rate)
    details = _wait_all(batch, ids)
    cpu_after = cpu_seconds(pid) if pid else (0.0, 0.0)
    failed = [d for d in details if d["status"] != "SUCCEEDED"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs did not succeed: {failed[0]}")
    last = max(d["stoppedAt"] for d in details) / 1000
    latencies = [float(d["startedAt"] - d["createdAt"]) for d in details]
    server_ms = (cpu_after[0] - cpu_before[0]) * 1000 / len(ids)
    jobs_ms = (cpu_after[1] - cpu_before[1]) * 1000 / len(ids)
    name = "kobako" if rate <= 0 else f"kobako@{rate:g}/s"
    return Result(name, len(ids), last - start, latencies,
                  f"{client} client; submitting took {submitted - start:.2f} s "
                  f"({len(ids) / (submitted - start):.0f} submits/s), client CPU "
                  f"{client_cpu * 1000 / len(ids):.2f} ms/job"
                  + (f"; CPU per job: server {server_ms:.2f} ms, the job's own processes "
                     f"{jobs_ms:.2f} ms" if pid else ""))


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
    parser.add_argument("--client", choices=("raw", "boto3"), default="raw",
                        help="who submits: lean SigV4 clients in processes (default) or boto3")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    check_signer()
    load_start = os.getloadavg()[0]
    results: list[Result] = []
    if args.skip_kobako:
        pass
    elif args.url:
        results.append(run_kobako(args.url, args.jobs, args.clients, rate=args.rate,
                                  client=args.client))
    else:
        with kobako_server(args.log_level) as (url, pid):
            results.append(run_kobako(url, args.jobs, args.clients, pid, client=args.client))
        if args.rate > 0:
            with kobako_server(args.log_level) as (url, pid):
                results.append(run_kobako(url, args.jobs, args.clients, pid, args.rate,
                                          args.client))
    why = "skipped (--skip-slurm)" if args.skip_slurm else slurm_ready()
    if not why:
        results.append(run_slurm(args.jobs, args.clients))
    print(f"{args.jobs} trivial jobs (`true`), {args.clients} concurrent clients, "
          f"{os.cpu_count()} CPUs, load average {load_start:.2f} -> {os.getloadavg()[0]:.2f}")
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
