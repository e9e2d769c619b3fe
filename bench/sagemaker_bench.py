"""SageMaker overheads: a training job against running its script directly, and
InvokeEndpoint against calling the same model server directly.

Both with the process runtime, in one run, on a fresh `kobako serve`:

- Training: a script-mode script (`--seconds S` of sleep, then a model file) is run
  directly with this Python N times, then as N training jobs (CreateTrainingJob with
  `sagemaker_program`, source in kobako S3, one small input channel). A job's time is
  from the CreateTrainingJob call to the first DescribeTrainingJob that says Completed
  (polled every 10 ms); overhead = median job time - median direct time. The phases
  (SecondaryStatusTransitions) of the median job are printed too.
- Inference: a trivial model (echo, kobako's default handlers) is deployed; its model
  server's port is read from its command line. The same request (a 40-byte JSON) is
  sent over one keep-alive `http.client` connection to kobako's InvokeEndpoint (SigV4
  signed before the clock starts) and to the model server's /invocations, alternating
  in rounds so that machine noise hits both; latency p50/p99 and sequential
  requests/s, then requests/s from `--clients` threads each way. boto3's
  invoke_endpoint is timed too, to show what a real client adds on top.

    python3 bench/sagemaker_bench.py                 # defaults: 10 jobs of 0.5 s, 2,000 calls
    python3 bench/sagemaker_bench.py --jobs 5 --calls 500
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).parent))
# ROLE and tarball() are the SageMaker tests' own, so that both stage jobs alike
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))
from batch_bench import cpu_seconds, kobako_server

from sagemaker_helpers import ROLE, tarball

TRAIN_PY = textwrap.dedent('''
    import argparse, os, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    time.sleep(args.seconds)
    with open(os.path.join(os.environ.get("SM_MODEL_DIR", "."), "model.txt"), "w") as f:
        f.write("trained")
''')
BODY = json.dumps({"instances": [[1.0, 2.0, 3.0]], "id": 42}).encode()


def _client(url: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=BotoConfig(retries={"max_attempts": 1}))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# ---------------------------------------------------------------------------- training


def run_direct(script: Path, seconds: float, runs: int) -> list[float]:
    """Wall time of `python train.py --seconds S`, as a user would run it."""
    times = []
    with tempfile.TemporaryDirectory() as model_dir:
        for _ in range(runs):
            began = time.perf_counter()
            subprocess.run([sys.executable, str(script), "--seconds", str(seconds)],
                           check=True, env={**os.environ, "SM_MODEL_DIR": model_dir},
                           cwd=script.parent)
            times.append(time.perf_counter() - began)
    return times


def run_jobs(url: str, bucket: str, seconds: float, runs: int
             ) -> tuple[list[float], list[dict[str, float]]]:
    sm, s3 = _client(url, "sagemaker"), _client(url, "s3")
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=tarball({
        "train.py": TRAIN_PY}))
    s3.put_object(Bucket=bucket, Key="data/train/data.csv", Body=b"1\n2\n3\n")
    times: list[float] = []
    phases: list[dict[str, float]] = []
    for index in range(runs + 1):  # the first is a warm-up
        name = f"bench-{index}-{os.getpid()}"
        request = {
            "TrainingJobName": name,
            "HyperParameters": {"sagemaker_program": "train.py",
                                "sagemaker_submit_directory":
                                    f"s3://{bucket}/code/sourcedir.tar.gz",
                                "seconds": str(seconds)},
            "AlgorithmSpecification": {"TrainingImage": "kobako/python",
                                       "TrainingInputMode": "File"},
            "RoleArn": ROLE,
            "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data/train"}}}],
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                               "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        }
        began = time.perf_counter()
        sm.create_training_job(**request)
        while True:
            job = sm.describe_training_job(TrainingJobName=name)
            if job["TrainingJobStatus"] != "InProgress":
                break
            time.sleep(0.01)
        took = time.perf_counter() - began
        if job["TrainingJobStatus"] != "Completed":
            raise SystemExit(f"job {name}: {job['TrainingJobStatus']} "
                             f"{job.get('FailureReason')}")
        if index == 0:
            continue
        times.append(took)
        steps = job["SecondaryStatusTransitions"]
        phases.append({step["Status"]: (step["EndTime"] - step["StartTime"]).total_seconds()
                       for step in steps if "EndTime" in step})
    return times, phases


# ---------------------------------------------------------------------------- inference


def model_server_port(server_pid: int) -> int:
    """The --port of the model_server.py process the kobako server started."""
    argv = _model_server(server_pid)[1]
    return int(argv[argv.index(b"--port") + 1])


def model_server_pid(server_pid: int) -> int:
    return _model_server(server_pid)[0]


def _model_server(server_pid: int) -> tuple[int, list[bytes]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == server_pid and any(a.endswith(b"model_server.py") for a in argv):
            return int(entry.name), argv
    raise SystemExit("no model server process found under the kobako server")


def deploy(url: str, bucket: str) -> str:
    sm, s3 = _client(url, "sagemaker"), _client(url, "s3")
    s3.put_object(Bucket=bucket, Key="echo/model.tar.gz", Body=tarball({"weights": "x"}))
    name = "bench-echo"
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": "kobako/python-inference", "ModelDataUrl": f"s3://{bucket}/echo/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "main", "ModelName": name, "InstanceType": "ml.t2.medium",
        "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    while (status := sm.describe_endpoint(EndpointName=name)["EndpointStatus"]) == "Creating":
        time.sleep(0.05)
    if status != "InService":
        raise SystemExit(f"endpoint {status}")
    return name


class Caller:
    """One keep-alive connection; `call` sends a request and returns its latency (s)."""

    def __init__(self, port: int, path: str, sign: bool) -> None:
        self.port, self.path, self.sign = port, path, sign
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.auth = SigV4Auth(Credentials("test", "test"), "sagemaker", "us-east-1")

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if not self.sign:
            return headers
        request = AWSRequest(method="POST", url=f"http://127.0.0.1:{self.port}{self.path}",
                             data=BODY, headers={**headers, "Host": f"127.0.0.1:{self.port}",
                                                 "X-Amzn-SageMaker-Accept": "application/json"})
        self.auth.add_auth(request)
        return dict(request.headers.items())

    def call(self) -> float:
        headers = self.headers()  # signing is the client's work, before the clock
        began = time.perf_counter()
        self.conn.request("POST", self.path, body=BODY, headers=headers)
        response = self.conn.getresponse()
        body = response.read()
        took = time.perf_counter() - began
        if response.status != 200 or json.loads(body) != json.loads(BODY):
            raise SystemExit(f"bad answer {response.status} {body[:200]!r}")
        return took


def threaded_rate(make: Callable[[], Caller], clients: int, seconds: float) -> float:
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def work(index: int) -> None:
        caller = make()
        while time.perf_counter() < stop:
            caller.call()
            counts[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=0.5, help="the script's own work")
    parser.add_argument("--calls", type=int, default=2000, help="invocations each way")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate-seconds", type=float, default=3.0)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch, \
            kobako_server(args.log_level) as (url, pid):
        script = Path(scratch) / "train.py"
        script.write_text(TRAIN_PY)
        s3 = _client(url, "s3")
        bucket = "sagemaker-bench"
        s3.create_bucket(Bucket=bucket)
        run_direct(script, args.seconds, 1)  # warm the page cache
        direct = run_direct(script, args.seconds, args.jobs)
        jobs, phases = run_jobs(url, bucket, args.seconds, args.jobs)

        endpoint = deploy(url, bucket)
        time.sleep(2)  # let the deployment's own work settle
        port = int(url.rsplit(":", 1)[1])
        model_port = model_server_port(pid)
        path = f"/endpoints/{endpoint}/invocations"
        kobako, direct_calls = Caller(port, path, True), Caller(model_port, "/invocations", False)
        for _ in range(100):  # warm-up
            kobako.call()
            direct_calls.call()
        via_kobako: list[float] = []
        via_model: list[float] = []
        model_pid = model_server_pid(pid)
        cpu = {"kobako": [0.0, 0.0], "model": [0.0, 0.0]}  # [kobako server, model server]
        for _ in range(args.calls // 100):
            for side, caller, into in (("kobako", kobako, via_kobako),
                                       ("model", direct_calls, via_model)):
                before = (cpu_seconds(pid)[0], cpu_seconds(model_pid)[0])
                into.extend(caller.call() for _ in range(100))
                cpu[side][0] += cpu_seconds(pid)[0] - before[0]
                cpu[side][1] += cpu_seconds(model_pid)[0] - before[1]
        runtime = _client(url, "sagemaker-runtime")
        boto_times = []
        for _ in range(min(args.calls, 500)):
            began = time.perf_counter()
            runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                    Body=BODY)["Body"].read()
            boto_times.append(time.perf_counter() - began)
        rate_kobako = threaded_rate(lambda: Caller(port, path, True), args.clients,
                                    args.rate_seconds)
        rate_model = threaded_rate(lambda: Caller(model_port, "/invocations", False),
                                   args.clients, args.rate_seconds)

    print(f"SageMaker on kobako, process runtime; {os.cpu_count()} CPUs, load average "
          f"{load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"\nTraining, {args.jobs} jobs of a script that works {args.seconds} s "
          f"(median; p90)")
    d50, j50 = statistics.median(direct), statistics.median(jobs)
    print(f"  script run directly with python     {d50:8.3f} s   {pct(direct, 90):.3f} s")
    print(f"  CreateTrainingJob -> Completed      {j50:8.3f} s   {pct(jobs, 90):.3f} s")
    print(f"  overhead (job - direct)             {j50 - d50:8.3f} s   "
          f"(each job: {', '.join(f'{t - d50:.2f}' for t in jobs)})")
    median_job = phases[jobs.index(sorted(jobs)[len(jobs) // 2])]
    print("  phases of the median job (s): " + ", ".join(
        f"{k} {v:.3f}" for k, v in median_job.items()))
    print(f"\nInvokeEndpoint, a {len(BODY)}-byte JSON echo model, "
          f"{len(via_kobako)} calls each way, one keep-alive connection")
    print(f"  {'way':<34} {'p50 ms':>8} {'p99 ms':>8} {'req/s 1 client':>15} "
          f"{f'req/s {args.clients} clients':>16}")
    k50, m50 = pct(via_kobako, 50) * 1000, pct(via_model, 50) * 1000
    rows = [("kobako InvokeEndpoint (raw HTTP)", via_kobako, rate_kobako),
            ("model server /invocations directly", via_model, rate_model),
            ("kobako via boto3 invoke_endpoint", boto_times, None)]
    for name, values, rate in rows:
        print(f"  {name:<34} {pct(values, 50) * 1000:>8.2f} {pct(values, 99) * 1000:>8.2f} "
              f"{len(values) / sum(values):>15.0f} {f'{rate:.0f}' if rate else '-':>16}")
    print(f"  InvokeEndpoint adds {k50 - m50:.2f} ms at p50 "
          f"({pct(via_kobako, 99) * 1000 - pct(via_model, 99) * 1000:.2f} ms at p99)")
    per_call = 1e6 / len(via_kobako)
    print(f"  CPU per call (us): via kobako: kobako server {cpu['kobako'][0] * per_call:.0f}, "
          f"model server {cpu['kobako'][1] * per_call:.0f}; directly: model server "
          f"{cpu['model'][1] * per_call:.0f} (kobako server {cpu['model'][0] * per_call:.0f},"
          f" shipping the model server's log lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
