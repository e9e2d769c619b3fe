"""Batch through boto3 against a real kobako server: resources, and jobs that really run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from batch_helpers import Env, make_env, wait_for
from conftest import Server


@pytest.fixture
def batch(server: Server) -> Any:
    return server.client("batch")


@pytest.fixture
def env(batch: Any) -> Env:
    return make_env(batch)


def _message(error: pytest.ExceptionInfo[ClientError]) -> str:
    assert error.value.response["Error"]["Code"] == "ClientException"
    return str(error.value.response["Error"]["Message"])


def test_compute_environments_and_queues(batch: Any, env: Env) -> None:
    ces = batch.describe_compute_environments(computeEnvironments=[env.ce])["computeEnvironments"]
    assert ces[0]["status"] == "VALID" and ces[0]["state"] == "ENABLED"
    assert ces[0]["computeResources"]["maxvCpus"] == 2
    assert ces[0]["computeEnvironmentArn"].endswith(f":compute-environment/{env.prefix}-ce")
    with pytest.raises(ClientError) as dup:
        make_env_named(batch, f"{env.prefix}-ce")
    assert _message(dup) == "Object already exists"
    batch.update_compute_environment(computeEnvironment=env.ce, computeResources={"maxvCpus": 1})
    ce = batch.describe_compute_environments(computeEnvironments=[env.ce])["computeEnvironments"]
    assert ce[0]["computeResources"]["maxvCpus"] == 1
    queues = batch.describe_job_queues(jobQueues=[env.queue])["jobQueues"]
    assert queues[0]["priority"] == 1 and queues[0]["status"] == "VALID"
    batch.update_job_queue(jobQueue=env.queue, priority=5, state="DISABLED")
    assert batch.describe_job_queues(jobQueues=[env.queue])["jobQueues"][0]["priority"] == 5
    batch.update_compute_environment(computeEnvironment=env.ce, state="DISABLED")
    with pytest.raises(ClientError) as linked:
        batch.delete_compute_environment(computeEnvironment=env.ce)
    assert _message(linked) == "Cannot delete, found existing JobQueue relationship"
    batch.delete_job_queue(jobQueue=env.queue)
    batch.delete_compute_environment(computeEnvironment=env.ce)
    assert batch.describe_job_queues(jobQueues=[env.queue])["jobQueues"] == []
    assert batch.describe_compute_environments(
        computeEnvironments=[env.ce])["computeEnvironments"] == []


def make_env_named(batch: Any, name: str) -> None:
    batch.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED")


def test_job_definitions_revisions_and_deregister(batch: Any, env: Env) -> None:
    name = env.definition(["true"], tags={"team": "a"},
                          retryStrategy={"attempts": 2}, timeout={"attemptDurationSeconds": 60})
    second = batch.register_job_definition(jobDefinitionName=name, type="container",
                                           containerProperties={"image": "x", "vcpus": 1,
                                                                "memory": 128,
                                                                "command": ["true"]})
    assert second["revision"] == 2
    assert second["jobDefinitionArn"].endswith(f":job-definition/{name}:2")
    by_name = batch.describe_job_definitions(jobDefinitionName=name)["jobDefinitions"]
    assert [d["revision"] for d in by_name] == [1, 2]
    one = batch.describe_job_definitions(jobDefinitions=[f"{name}:1"])["jobDefinitions"]
    assert one[0]["retryStrategy"] == {"attempts": 2} and one[0]["tags"] == {"team": "a"}
    by_arn = batch.describe_job_definitions(jobDefinitions=[second["jobDefinitionArn"]])
    assert by_arn["jobDefinitions"][0]["revision"] == 2
    batch.deregister_job_definition(jobDefinition=f"{name}:2")
    active = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")
    assert [d["revision"] for d in active["jobDefinitions"]] == [1]
    with pytest.raises(ClientError):
        batch.submit_job(jobName="j", jobQueue=env.queue, jobDefinition=f"{name}:2")


def test_submit_errors(batch: Any, env: Env) -> None:
    name = env.definition(["true"])
    with pytest.raises(ClientError) as queue:
        batch.submit_job(jobName="j", jobQueue="no-such-queue", jobDefinition=name)
    assert "no-such-queue" in _message(queue)
    with pytest.raises(ClientError) as dep:
        env.submit(name, dependsOn=[{"jobId": "00000000-0000-0000-0000-000000000000"}])
    assert "does not exist" in _message(dep)
    with pytest.raises(ClientError):
        env.submit(name, arrayProperties={"size": 1})
    with pytest.raises(ClientError):
        env.submit(name, jobName="bad name!")


def test_success_logs_env_and_ref_substitution(server: Server, env: Env) -> None:
    script = ("import os; print('hello', os.environ['GREETING']); "
              "print(os.environ['AWS_BATCH_JOB_ID'], os.environ['AWS_BATCH_JOB_ATTEMPT'], "
              "os.environ['AWS_BATCH_JQ_NAME'], os.environ['AWS_BATCH_CE_NAME'])")
    name = env.definition(["python3", "-c", script, "Ref::who"],
                          container={"environment": [{"name": "GREETING", "value": "def"}]},
                          parameters={"who": "default"})
    job_id = env.submit(name, parameters={"who": "world"}, tags={"k": "v"},
                        containerOverrides={"environment": [{"name": "GREETING",
                                                             "value": "override"}]})
    job = env.wait(job_id)
    assert job["status"] == "SUCCEEDED", job
    assert job["container"]["command"][-1] == "world"
    assert job["statusReason"] == "Essential container in task exited"
    assert job["createdAt"] <= job["startedAt"] <= job["stoppedAt"]
    attempt = job["attempts"][0]
    assert attempt["container"]["exitCode"] == 0
    stream = attempt["container"]["logStreamName"]
    assert stream == f"{name}/default/{job_id}"
    logs = server.client("logs")
    events = [e["message"] for e in logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)["events"]]
    assert events == ["hello override",
                      f"{job_id} 1 {env.prefix}-q {env.prefix}-ce"]
    assert env.batch.list_tags_for_resource(resourceArn=job["jobArn"])["tags"] == {"k": "v"}
    env.batch.tag_resource(resourceArn=job["jobArn"], tags={"x": "y"})
    env.batch.untag_resource(resourceArn=job["jobArn"], tagKeys=["k"])
    assert env.batch.list_tags_for_resource(resourceArn=job["jobArn"])["tags"] == {"x": "y"}
    listed = env.batch.list_jobs(jobQueue=env.queue, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert [j["jobId"] for j in listed] == [job_id]
    filtered = env.batch.list_jobs(jobQueue=env.queue,
                                   filters=[{"name": "JOB_NAME", "values": ["jo*"]}])
    assert [j["jobId"] for j in filtered["jobSummaryList"]] == [job_id]


def test_dependencies_and_failure_cascade(env: Env) -> None:
    ok = env.definition(["python3", "-c", "print('ok')"])
    bad = env.definition(["sh", "-c", "exit 3"])
    first = env.submit(ok)
    second = env.submit(ok, dependsOn=[{"jobId": first}])
    failing = env.submit(bad)
    blocked = env.submit(ok, dependsOn=[{"jobId": failing}])
    chained = env.submit(ok, dependsOn=[{"jobId": blocked}])
    assert env.wait(second)["status"] == "SUCCEEDED"
    assert env.describe(first)["stoppedAt"] <= env.describe(second)["startedAt"]
    failed = env.wait(failing)
    assert failed["status"] == "FAILED"
    assert failed["attempts"][0]["container"]["exitCode"] == 3
    for job_id in (blocked, chained):
        job = env.wait(job_id)
        assert job["status"] == "FAILED" and job["statusReason"] == "Dependent Job failed"
        assert job["attempts"] == []


def test_array_n_to_n_and_sequential(env: Env) -> None:
    write = env.definition(
        ["sh", "-c", 'echo "$AWS_BATCH_JOB_ARRAY_INDEX/$AWS_BATCH_JOB_ARRAY_SIZE"'])
    parent = env.submit(write, arrayProperties={"size": 3})
    follower = env.submit(write, arrayProperties={"size": 3},
                          dependsOn=[{"jobId": parent, "type": "N_TO_N"}])
    sequential = env.submit(write, arrayProperties={"size": 3},
                            dependsOn=[{"type": "SEQUENTIAL"}])
    for job_id in (parent, follower, sequential):
        job = env.wait(job_id)
        assert job["status"] == "SUCCEEDED", job
        assert job["arrayProperties"]["size"] == 3
        assert job["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    for index in range(3):
        child = env.describe(f"{follower}:{index}")
        assert child["arrayProperties"]["index"] == index
        assert env.describe(f"{parent}:{index}")["stoppedAt"] <= child["startedAt"]
    seq = [env.describe(f"{sequential}:{i}") for i in range(3)]
    assert seq[0]["stoppedAt"] <= seq[1]["startedAt"] and seq[1]["stoppedAt"] <= seq[2]["startedAt"]
    children = env.batch.list_jobs(arrayJobId=parent, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(c["arrayProperties"]["index"] for c in children) == [0, 1, 2]
    logs_stream = seq[2]["container"]["logStreamName"]
    assert logs_stream.endswith(f"{sequential}:2")


def test_retry_with_evaluate_on_exit(env: Env) -> None:
    flaky = env.definition(
        ["sh", "-c", 'test "$AWS_BATCH_JOB_ATTEMPT" -ge 3 || exit 7'],
        retryStrategy={"attempts": 5})
    job = env.wait(env.submit(flaky))
    assert job["status"] == "SUCCEEDED"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [7, 7, 0]
    stop_on_2 = env.definition(["sh", "-c", "exit 2"], retryStrategy={
        "attempts": 4, "evaluateOnExit": [{"onExitCode": "2", "action": "EXIT"},
                                          {"onReason": "*", "action": "RETRY"}]})
    job = env.wait(env.submit(stop_on_2))
    assert job["status"] == "FAILED" and len(job["attempts"]) == 1
    override = env.definition(["sh", "-c", "exit 1"])
    job = env.wait(env.submit(override, retryStrategy={"attempts": 2}))
    assert job["status"] == "FAILED" and len(job["attempts"]) == 2


def test_timeout(env: Env) -> None:
    slow = env.definition(["sleep", "30"])
    job = env.wait(env.submit(slow, timeout={"attemptDurationSeconds": 1}))
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    assert job["stoppedAt"] - job["startedAt"] < 10_000


def test_terminate_and_cancel(env: Env) -> None:
    slow = env.definition(["sleep", "30"])
    running = env.submit(slow)
    env.wait(running, ("RUNNING",))
    waiting = env.submit(slow, dependsOn=[{"jobId": running}])
    env.batch.cancel_job(jobId=running, reason="ignored: already running")
    env.batch.cancel_job(jobId=waiting, reason="not needed")
    cancelled = env.wait(waiting)
    assert cancelled["statusReason"] == "not needed" and cancelled["isCancelled"]
    assert env.describe(running)["status"] == "RUNNING"
    env.batch.terminate_job(jobId=running, reason="stop now")
    job = env.wait(running)
    assert job["status"] == "FAILED" and job["statusReason"] == "stop now"
    assert job["isTerminated"]
    assert job["attempts"][0]["container"]["exitCode"] == 137


def test_capacity_runs_big_jobs_one_after_the_other(batch: Any) -> None:
    env = make_env(batch, max_vcpus=2)
    big = env.definition(["python3", "-c", "import time; time.sleep(0.5)"],
                         container={"resourceRequirements": [{"type": "VCPU", "value": "2"}]})
    first, second = env.submit(big), env.submit(big)
    jobs = [env.wait(first), env.wait(second)]
    assert all(j["status"] == "SUCCEEDED" for j in jobs)
    a, b = sorted(jobs, key=lambda j: j["startedAt"])
    assert a["stoppedAt"] <= b["startedAt"]
    huge = env.definition(["true"], container={
        "resourceRequirements": [{"type": "VCPU", "value": "64"}]})
    stuck = env.submit(huge)
    small = env.submit(env.definition(["true"]))
    assert env.wait(small)["status"] == "SUCCEEDED"
    job = wait_for(lambda: (j := env.describe(stuck)).get("statusReason") and j, 10,
                   "no statusReason for a job that cannot fit")
    assert job["status"] == "RUNNABLE"
    assert job["statusReason"].startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")
    env.batch.cancel_job(jobId=stuck, reason="cannot fit")


def test_aws_cli_submit_job_and_logs(server: Server, env: Env, tmp_path: Path) -> None:
    name = env.definition(["sh", "-c", "echo from-cli"])
    cli_env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1", "HOME": str(tmp_path)}

    def aws(*args: str) -> Any:
        done = subprocess.run(["aws", "--endpoint-url", server.url, "--output", "json", *args],
                              env=cli_env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    submitted = aws("batch", "submit-job", "--job-name", "cli", "--job-queue", env.queue,
                    "--job-definition", name)
    job = env.wait(submitted["jobId"])
    assert job["status"] == "SUCCEEDED"
    out = aws("logs", "get-log-events", "--log-group-name", "/aws/batch/job",
              "--log-stream-name", job["container"]["logStreamName"], "--start-from-head")
    assert [e["message"] for e in out["events"]] == ["from-cli"]
