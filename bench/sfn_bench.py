"""Step Functions throughput and latency: kobako's interpreter beside moto's, one run.

Three machines, each started N times from one boto3 client, then waited for:

- chain: 100 Pass states in a row (100 transitions an execution),
- map: one Map over 1,000 items, each a Pass (1,001 transitions),
- loop: a Choice loop counting to 50 with States.MathAdd (101 transitions).

On kobako each workload runs N executions one at a time (each started when the
previous one has ended: interpreter speed and latency) and N all at once (throughput
under load). moto 5.2 can run only one execution per server process: StartExecution
deep-copies the state machine, which reaches the backend and the locks of any earlier
execution ("cannot pickle '_thread.RLock'", HTTP 500). So moto gets a fresh server
for each of its executions and is compared on what one execution shows: transitions/s
inside it (startDate to stopDate) and the first-transition latency.

For each server it reports executions/s and state transitions/s (from the first
StartExecution to the last execution finished), and the latency from StartExecution
to the first state entered (p50, p99): server-side (ExecutionStarted to the first
*StateEntered event, as the history records them) and client-side (the moment the
client sent StartExecution to that event). moto runs as `python -m moto.server` with
`execute_state_machine` switched on, so it really interprets the definitions.

    python3 bench/sfn_bench.py [--runs 20] [--no-moto]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

ROLE = "arn:aws:iam::123456789012:role/bench"


def chain(length: int = 100) -> dict[str, Any]:
    states: dict[str, Any] = {}
    for i in range(length):
        states[f"S{i}"] = {"Type": "Pass", **({"Next": f"S{i + 1}"} if i < length - 1
                                               else {"End": True})}
    return {"StartAt": "S0", "States": states}


def fan_out(items: int = 1000) -> tuple[dict[str, Any], str]:
    machine = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 0,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
        "ResultPath": None, "End": True}}}
    return machine, json.dumps({"items": list(range(items))})


def loop(count: int = 50) -> tuple[dict[str, Any], str]:
    machine = {"StartAt": "Check", "States": {
        "Check": {"Type": "Choice", "Choices": [
            {"Variable": "$.i", "NumericLessThan": count, "Next": "Add"}],
            "Default": "Done"},
        "Add": {"Type": "Pass", "Parameters": {"i.$": "States.MathAdd($.i, 1)"},
                "Next": "Check"},
        "Done": {"Type": "Succeed"}}}
    return machine, '{"i": 0}'


@dataclass
class Workload:
    name: str
    definition: dict[str, Any]
    input: str
    transitions: int  # states entered by one execution


WORKLOADS = [
    Workload("chain (100 Pass)", chain(), "{}", 100),
    Workload("map (1,000 items)", *fan_out(), 1001),
    Workload("loop (Choice x 50)", *loop(), 101),
]


@dataclass
class Result:
    server: str
    workload: str
    executions: int
    seconds: float
    transitions: int
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)  # startDate to stopDate, s
    failed: int = 0
    per_execution: int = 0

    def merge(self, other: Result) -> None:
        self.executions += other.executions
        self.seconds += other.seconds
        self.transitions += other.transitions
        self.server_ms += other.server_ms
        self.client_ms += other.client_ms
        self.durations += other.durations
        self.failed += other.failed

    def pct(self, values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered \
            else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


@contextmanager
def serve(cmd: list[str], port: int, workdir: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(workdir / f"server-{port}.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=workdir)
    try:
        wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def client(url: str) -> Any:
    return boto3.client("stepfunctions", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=BotoConfig(retries={"max_attempts": 0},
                                          max_pool_connections=32))


def run_workload(sfn: Any, server: str, work: Workload, runs: int, deadline_s: float,
                 concurrent: bool) -> Result:
    """Start `runs` executions (all at once, or each after the previous one ended)."""
    name = f"bench-{work.name.split()[0]}-{os.getpid()}-{time.monotonic_ns()}"
    arn = sfn.create_state_machine(name=name, definition=json.dumps(work.definition),
                                   roleArn=ROLE)["stateMachineArn"]
    sent: dict[str, float] = {}
    pending: set[str] = set()
    finish = begin = time.time()
    failed = 0
    durations: list[float] = []
    end = time.monotonic() + deadline_s

    def drain(until_empty: bool) -> None:
        nonlocal finish, failed
        while pending and time.monotonic() < end:
            for arn_ in list(pending):
                found = sfn.describe_execution(executionArn=arn_)
                if found["status"] != "RUNNING":
                    pending.discard(arn_)
                    failed += found["status"] != "SUCCEEDED"
                    finish = max(finish, found["stopDate"].timestamp())
                    if found["status"] == "SUCCEEDED":
                        durations.append((found["stopDate"] - found["startDate"])
                                         .total_seconds())
            if pending:
                time.sleep(0.002 if until_empty else 0.01)

    for index in range(runs):
        at = time.time()
        started = sfn.start_execution(stateMachineArn=arn, input=work.input,
                                      name=f"e{index}")  # moto has no default name
        sent[started["executionArn"]] = at
        pending.add(started["executionArn"])
        if not concurrent:
            drain(True)
    drain(False)
    if pending:
        finish = time.time()
    done = runs - len(pending) - failed
    label = f"{work.name}, {'concurrent' if concurrent else 'one at a time'}"
    result = Result(server, label, done, finish - begin, done * work.transitions,
                    durations=durations, failed=failed + len(pending),
                    per_execution=work.transitions)
    for arn_, at in sent.items():
        events = sfn.get_execution_history(executionArn=arn_, maxResults=3)["events"]
        entered = next((e for e in events if e["type"].endswith("StateEntered")), None)
        if entered is None:
            continue
        first = entered["timestamp"].timestamp()
        result.server_ms.append((first - events[0]["timestamp"].timestamp()) * 1000)
        result.client_ms.append((first - at) * 1000)
    return result


def switch_on_moto(url: str) -> None:
    """moto only interprets definitions when asked to (otherwise executions just succeed)."""
    request = urllib.request.Request(
        f"{url}/moto-api/config", method="POST",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()


def measure(url: str, server: str, runs: int, deadline_s: float,
            concurrent: bool) -> list[Result]:
    sfn = client(url)
    modes = [False, True] if concurrent else [False]
    return [run_workload(sfn, server, work, runs, deadline_s, mode)
            for mode in modes for work in WORKLOADS]


def report(results: list[Result]) -> str:
    lines = ["| server | workload | executions | exec/s (wall) | transitions/s (wall) | "
             "transitions/s in one execution (p50) | first transition p50 / p99, server "
             "(ms) | p50 / p99, client (ms) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        note = f" ({r.failed} failed)" if r.failed else ""
        inside = r.per_execution / max(r.pct(r.durations, 50), 1e-3) if r.durations \
            else float("nan")
        wall = (f"{r.executions / r.seconds:,.1f} | {r.transitions / r.seconds:,.0f}"
                if r.seconds else "n/a | n/a")
        lines.append(
            f"| {r.server} | {r.workload} | {r.executions}{note} | {wall} | {inside:,.0f} | "
            f"{r.pct(r.server_ms, 50):.1f} / {r.pct(r.server_ms, 99):.1f} | "
            f"{r.pct(r.client_ms, 50):.1f} / {r.pct(r.client_ms, 99):.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20,
                        help="executions per workload and mode on kobako")
    parser.add_argument("--deadline", type=float, default=300.0,
                        help="seconds to wait for one workload's executions")
    parser.add_argument("--no-moto", action="store_true")
    parser.add_argument("--moto-runs", type=int, default=3,
                        help="executions per workload on moto (a fresh server each)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sfn-bench-"))
    results: list[Result] = []
    port = free_port()
    with serve([sys.executable, "-m", "kobako", "serve", "--port", str(port), "--data-dir",
                str(workdir / "kobako"), "--log-level", "warning"], port, workdir) as url:
        results += measure(url, "kobako", args.runs, args.deadline, True)
    if not args.no_moto:
        for work in WORKLOADS:
            merged: Result | None = None
            for _ in range(args.moto_runs):
                port = free_port()
                with serve([sys.executable, "-m", "moto.server", "-p", str(port)], port,
                           workdir) as url:
                    switch_on_moto(url)
                    one = run_workload(client(url), "moto", work, 1, args.deadline, False)
                if merged is None:
                    merged = one
                else:
                    merged.merge(one)
            assert merged is not None
            merged.seconds = 0.0  # fresh servers: no meaningful wall-clock rate
            results.append(merged)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
