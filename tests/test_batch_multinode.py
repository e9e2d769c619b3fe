"""Multi-node parallel jobs through boto3 against a real kobako server: node ranges and
overrides, nodes that talk over TCP, gang scheduling, main-node semantics, terminate,
ListJobs by multiNodeJobId, validation, and kill -9."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from batch_helpers import Env, make_env, wait_for
from conftest import Server, free_port, start_server
from kobako.batch.multinode import (
    effective_properties,
    node_containers,
    node_overrides,
    parse_target,
)
from kobako.protocol.errors import AwsError

# Every node runs this: the main node listens on MNP_PORT (from the job definition) and
# waits for each other node to say hello; the other nodes connect to the main node's
# address from AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS.
TCP_SCRIPT = r"""
import os, socket, sys, time
e = os.environ
me, main, n = int(e["AWS_BATCH_JOB_NODE_INDEX"]), int(e["AWS_BATCH_JOB_MAIN_NODE_INDEX"]), \
    int(e["AWS_BATCH_JOB_NUM_NODES"])
port = int(e["MNP_PORT"])
print("node", me, "of", n, "id", e["AWS_BATCH_JOB_ID"], "attempt", e["AWS_BATCH_JOB_ATTEMPT"],
      flush=True)
if me == main:
    assert "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS" not in e
    server = socket.create_server(("0.0.0.0", port))
    server.settimeout(30)
    heard, conns = set(), []
    while len(heard) < n - 1:
        conn, _ = server.accept()
        heard.add(int(conn.recv(64).decode()))
        conn.sendall(b"welcome")
        conns.append(conn)
    for conn in conns:  # each worker closes when done; the main node's exit would stop it
        conn.recv(64)
    time.sleep(0.5)
    print("main heard", sorted(heard), flush=True)
else:
    address = e["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"]
    deadline = time.time() + 30
    while True:
        try:
            sock = socket.create_connection((address, port), timeout=2)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    with sock:
        sock.sendall(str(me).encode())
        print("worker", me, "got", sock.recv(64).decode(), "from", address, flush=True)
"""


@pytest.fixture
def batch(server: Server) -> Any:
    return server.client("batch")


@pytest.fixture
def logs(server: Server) -> Any:
    return server.client("logs")


def _container(command: list[str], vcpus: str = "0.5", **extra: Any) -> dict[str, Any]:
    return {"image": "busybox", "command": command,
            "resourceRequirements": [{"type": "VCPU", "value": vcpus},
                                     {"type": "MEMORY", "value": "128"}], **extra}


def _register(env: Env, ranges: list[tuple[str, dict[str, Any]]], num_nodes: int,
              main: int = 0, **kwargs: Any) -> str:
    name = f"{env.prefix}-mnp-{time.monotonic_ns()}"
    env.batch.register_job_definition(
        jobDefinitionName=name, type="multinode",
        nodeProperties={"numNodes": num_nodes, "mainNode": main,
                        "nodeRangeProperties": [{"targetNodes": t, "container": c}
                                                for t, c in ranges]}, **kwargs)
    return name


def _nodes(env: Env, job_id: str, status: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = env.batch.list_jobs(multiNodeJobId=job_id,
                                                    jobStatus=status)["jobSummaryList"]
    return sorted(out, key=lambda s: int(s["nodeProperties"]["nodeIndex"]))


def _log(logs: Any, definition: str, job_id: str) -> list[str]:
    events = logs.get_log_events(logGroupName="/aws/batch/job",
                                 logStreamName=f"{definition}/default/{job_id}")["events"]
    return [str(e["message"]) for e in events]


def _message(error: pytest.ExceptionInfo[ClientError]) -> str:
    assert error.value.response["Error"]["Code"] == "ClientException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(error.value.response["Error"]["Message"])


def test_three_nodes_talk_over_tcp(batch: Any, logs: Any) -> None:
    env = make_env(batch)
    port = free_port()
    definition = _register(env, [("0:", _container(
        [sys.executable, "-c", TCP_SCRIPT],
        environment=[{"name": "MNP_PORT", "value": str(port)}]))], num_nodes=3)
    described = batch.describe_job_definitions(jobDefinitionName=definition)["jobDefinitions"]
    assert described[0]["type"] == "multinode"
    assert described[0]["nodeProperties"]["numNodes"] == 3
    job_id = env.submit(definition, jobName="mnp-tcp")
    job = env.wait(job_id, timeout=60)
    assert job["status"] == "SUCCEEDED", job
    assert "container" not in job
    assert job["nodeProperties"]["numNodes"] == 3 and job["nodeProperties"]["mainNode"] == 0
    assert job["attempts"][0]["container"]["exitCode"] == 0
    assert job["attempts"][0]["container"]["logStreamName"] == \
        f"{definition}/default/{job_id}#0"
    nodes = batch.describe_jobs(jobs=[f"{job_id}#{i}" for i in range(3)])["jobs"]
    assert [n["jobId"] for n in nodes] == [f"{job_id}#{i}" for i in range(3)]
    assert [n["nodeDetails"] for n in nodes] == [
        {"nodeIndex": 0, "isMainNode": True}, {"nodeIndex": 1, "isMainNode": False},
        {"nodeIndex": 2, "isMainNode": False}]
    assert all(n["status"] == "SUCCEEDED" and n["container"]["exitCode"] == 0 for n in nodes)
    assert _log(logs, definition, f"{job_id}#0")[-1] == "main heard [1, 2]"
    for index in (1, 2):
        lines = _log(logs, definition, f"{job_id}#{index}")
        assert lines[0] == f"node {index} of 3 id {job_id}#{index} attempt 1"
        assert lines[-1] == f"worker {index} got welcome from 127.0.0.1"
    # ListJobs: the queue shows the parent only; multiNodeJobId lists its nodes.
    listed = batch.list_jobs(jobQueue=env.queue, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert [(s["jobId"], s["nodeProperties"]) for s in listed] == [(job_id, {"numNodes": 3})]
    summaries = _nodes(env, job_id, "SUCCEEDED")
    assert [s["nodeProperties"] for s in summaries] == [
        {"isMainNode": True, "numNodes": 3, "nodeIndex": 0},
        {"isMainNode": False, "numNodes": 3, "nodeIndex": 1},
        {"isMainNode": False, "numNodes": 3, "nodeIndex": 2}]
    assert _nodes(env, job_id, "RUNNING") == []


def test_node_ranges_and_node_overrides(batch: Any, logs: Any) -> None:
    env = make_env(batch)
    # The main node outlives the others (its exit would stop them).
    echo = ["sh", "-c", "echo range=$RANGE node=$AWS_BATCH_JOB_NODE_INDEX of "
            "$AWS_BATCH_JOB_NUM_NODES main=$AWS_BATCH_JOB_MAIN_NODE_INDEX Ref::word; "
            "if [ $AWS_BATCH_JOB_NODE_INDEX = $AWS_BATCH_JOB_MAIN_NODE_INDEX ]; then "
            "sleep 1; fi"]
    definition = _register(env, [
        ("0:", _container(echo, environment=[{"name": "RANGE", "value": "wide"}])),
        ("1:1", _container(echo, environment=[{"name": "RANGE", "value": "nested"}])),
    ], num_nodes=2, main=1, parameters={"word": "default"})
    job_id = env.submit(definition, parameters={"word": "given"}, nodeOverrides={
        "numNodes": 4,
        "nodePropertyOverrides": [
            {"targetNodes": "3", "containerOverrides": {
                "command": ["sh", "-c", "echo override $EXTRA Ref::word"],
                "environment": [{"name": "EXTRA", "value": "x1"}]}},
            {"targetNodes": "2:", "containerOverrides": {
                "environment": [{"name": "RANGE", "value": "overridden"}]}},
        ]})
    job = env.wait(job_id, timeout=60)
    assert job["status"] == "SUCCEEDED", job
    assert job["nodeProperties"]["numNodes"] == 4
    lines = [_log(logs, definition, f"{job_id}#{i}") for i in range(4)]
    assert lines == [["range=wide node=0 of 4 main=1 given"],
                     ["range=nested node=1 of 4 main=1 given"],
                     ["range=overridden node=2 of 4 main=1 given"],
                     ["override x1 given"]]
    nodes = batch.describe_jobs(jobs=[f"{job_id}#3"])["jobs"]
    env_of = {e["name"]: e["value"] for e in nodes[0]["container"]["environment"]}
    assert env_of == {"RANGE": "overridden", "EXTRA": "x1"}
    assert nodes[0]["nodeDetails"] == {"nodeIndex": 3, "isMainNode": False}


def test_validation_errors(batch: Any) -> None:
    env = make_env(batch)
    base = _container(["true"])

    def register(props: dict[str, Any], **kwargs: Any) -> str:
        with pytest.raises(ClientError) as error:
            batch.register_job_definition(jobDefinitionName=f"{env.prefix}-bad",
                                          type="multinode", nodeProperties=props, **kwargs)
        return _message(error)

    def ranges(*targets: str) -> list[dict[str, Any]]:
        return [{"targetNodes": t, "container": base} for t in targets]

    assert "mainNode (2) must be less than the number of nodes (2)" in register(
        {"numNodes": 2, "mainNode": 2, "nodeRangeProperties": ranges("0:")})
    assert "must account for all nodes (0:3); nodes 2, 3 are in no node range" in register(
        {"numNodes": 4, "mainNode": 0, "nodeRangeProperties": ranges("0:1")})
    assert "outside the job's nodes" in register(
        {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": ranges("0:5")})
    assert "Invalid targetNodes 'a:b'" in register(
        {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": ranges("a:b")})
    assert "containerProperties can't be specified" in register(
        {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": ranges(":")},
        containerProperties=base)
    with pytest.raises(ClientError) as missing:
        batch.register_job_definition(jobDefinitionName=f"{env.prefix}-bad", type="multinode")
    assert "nodeProperties is required" in _message(missing)
    with pytest.raises(ClientError) as mixed:
        batch.register_job_definition(
            jobDefinitionName=f"{env.prefix}-bad", type="container", containerProperties=base,
            nodeProperties={"numNodes": 1, "mainNode": 0,
                            "nodeRangeProperties": ranges("0")})
    assert "nodeProperties can't be specified" in _message(mixed)

    closed = _register(env, [("0:1", base)], num_nodes=2)
    opened = _register(env, [("0", base), ("1:", base)], num_nodes=2, main=1)

    def submit(definition: str, **kwargs: Any) -> str:
        with pytest.raises(ClientError) as error:
            env.submit(definition, **kwargs)
        return _message(error)

    assert "Array jobs are not supported for multi-node parallel jobs" in submit(
        opened, arrayProperties={"size": 2})
    assert "open upper boundary" in submit(closed, nodeOverrides={"numNodes": 3})
    assert "lower boundary of the open node range" in submit(
        opened, nodeOverrides={"numNodes": 1})
    main_one = _register(env, [(":", base)], num_nodes=2, main=1)
    assert "main node index (1)" in submit(main_one, nodeOverrides={"numNodes": 1})
    assert "containerOverrides can't be specified" in submit(
        opened, containerOverrides={"command": ["false"]})
    assert "outside the job's nodes" in submit(opened, nodeOverrides={
        "nodePropertyOverrides": [{"targetNodes": "5", "containerOverrides": {}}]})
    single = env.definition(["true"])
    assert "only be specified for multi-node parallel jobs" in submit(
        single, nodeOverrides={"numNodes": 2})
    # Nothing was created by the refused submits.
    assert batch.list_jobs(jobQueue=env.queue, jobStatus="RUNNABLE")["jobSummaryList"] == []


def test_gang_never_starts_partially(batch: Any) -> None:
    # More vCPUs in all than the CE has: RUNNABLE with AWS's reason, no node started.
    small = make_env(batch, max_vcpus=1)
    too_big = _register(small, [("0:", _container(["true"], vcpus="1"))], num_nodes=2)
    stuck = small.submit(too_big)
    job = wait_for(lambda: (j := small.describe(stuck)).get("statusReason") and j, 10,
                   "no statusReason")
    assert job["status"] == "RUNNABLE"
    assert job["statusReason"].startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")
    assert len(_nodes(small, stuck, "RUNNABLE")) == 2
    batch.terminate_job(jobId=stuck, reason="never fits")
    failed = small.wait(stuck)
    assert failed["status"] == "FAILED" and failed["statusReason"] == "never fits"
    assert len(_nodes(small, stuck, "FAILED")) == 2

    # Two nodes on a CE where only one fits while another job runs: the gang waits
    # whole, then starts whole.
    env = make_env(batch, max_vcpus=2)
    sleeper = env.submit(env.definition(["sleep", "60"]))
    env.wait(sleeper, ("RUNNING",))
    outlive = 'sleep 0.2; if [ $AWS_BATCH_JOB_NODE_INDEX = 0 ]; then sleep 0.5; fi'
    pair = _register(env, [("0:", _container(["sh", "-c", outlive], vcpus="1"))],
                     num_nodes=2)
    gang = env.submit(pair)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert env.describe(gang)["status"] == "RUNNABLE"
        assert _nodes(env, gang, "STARTING") == [] and _nodes(env, gang, "RUNNING") == []
        time.sleep(0.1)
    assert len(_nodes(env, gang, "RUNNABLE")) == 2
    batch.terminate_job(jobId=sleeper, reason="make room")
    done = env.wait(gang, timeout=30)
    assert done["status"] == "SUCCEEDED", done
    assert len(_nodes(env, gang, "SUCCEEDED")) == 2


def test_main_node_failure_stops_the_others_and_retry_restarts_all(batch: Any) -> None:
    env = make_env(batch)
    fail_main = ["sh", "-c", 'if [ "$AWS_BATCH_JOB_NODE_INDEX" = 0 ]; then sleep 0.5; '
                 "exit 3; fi; exec sleep 60"]
    definition = _register(env, [("0:", _container(fail_main))], num_nodes=3)
    started = time.monotonic()
    job = env.wait(env.submit(definition), timeout=30)
    assert time.monotonic() - started < 20
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Essential container in task exited"
    assert job["attempts"][0]["container"]["exitCode"] == 3
    nodes = batch.describe_jobs(jobs=[f"{job['jobId']}#{i}" for i in range(3)])["jobs"]
    assert [n["status"] for n in nodes] == ["FAILED"] * 3
    assert nodes[0]["container"]["exitCode"] == 3
    for worker in nodes[1:]:
        assert worker["statusReason"] == "Main node exited; the node was stopped"
        assert worker["container"]["exitCode"] in (137, 143)

    # A child node's failure changes nothing; a main node failure retries the whole gang.
    script = ('if [ "$AWS_BATCH_JOB_NODE_INDEX" = 1 ]; then exit 5; fi; '
              'if [ "$AWS_BATCH_JOB_NODE_INDEX" = 0 ] && [ "$AWS_BATCH_JOB_ATTEMPT" = 1 ]; '
              "then sleep 1; exit 1; fi; sleep 1")
    retried = _register(env, [("0:", _container(["sh", "-c", script]))], num_nodes=2,
                        retryStrategy={"attempts": 2})
    job = env.wait(env.submit(retried), timeout=30)
    assert job["status"] == "SUCCEEDED", job
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [1, 0]
    nodes = batch.describe_jobs(jobs=[f"{job['jobId']}#{i}" for i in range(2)])["jobs"]
    assert [len(n["attempts"]) for n in nodes] == [2, 2]
    assert [n["status"] for n in nodes] == ["SUCCEEDED", "FAILED"]
    assert nodes[1]["container"]["exitCode"] == 5


def test_terminate_stops_every_node(batch: Any) -> None:
    env = make_env(batch)
    definition = _register(env, [("0:", _container(["sleep", "60"]))], num_nodes=3)
    job_id = env.submit(definition)
    env.wait(job_id, ("RUNNING",))
    wait_for(lambda: len(_nodes(env, job_id, "RUNNING")) == 3, 10, "nodes not running")
    batch.terminate_job(jobId=f"{job_id}#2", reason="stop the gang")  # a node stops all
    job = env.wait(job_id, timeout=15)
    assert job["status"] == "FAILED" and job["isTerminated"]
    assert job["statusReason"] == "stop the gang"
    nodes = batch.describe_jobs(jobs=[f"{job_id}#{i}" for i in range(3)])["jobs"]
    assert [n["status"] for n in nodes] == ["FAILED"] * 3
    assert all(n["isTerminated"] for n in nodes)


def test_kill_9_mid_job_then_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        env = make_env(server.client("batch"))
        marker = tmp_path / "ran"
        script = (f'echo $AWS_BATCH_JOB_NODE_INDEX >> {marker}; '
                  'if [ "$AWS_BATCH_JOB_ATTEMPT" = 1 ]; then exec sleep 60; fi; '
                  # the main node outlives the other (its exit would stop it)
                  'if [ "$AWS_BATCH_JOB_NODE_INDEX" = 0 ]; then sleep 0.5; fi')
        definition = _register(env, [("0:", _container(["sh", "-c", script]))], num_nodes=2,
                               retryStrategy={"attempts": 2})
        job_id = env.submit(definition)
        wait_for(lambda: len(_nodes(env, job_id, "RUNNING")) == 2, 15,
                 f"nodes not running {env.describe(job_id)} {_nodes(env, job_id, 'RUNNABLE')}")
        server.kill()
        server = start_server(data)
        env.batch = server.client("batch")
        job = env.wait(job_id, timeout=30)
        assert job["status"] == "SUCCEEDED", job
        assert job["attempts"][0]["statusReason"].startswith("Host EC2")
        assert sorted(marker.read_text().split()) == ["0", "0", "1", "1"]
        nodes = env.batch.describe_jobs(jobs=[f"{job_id}#0", f"{job_id}#1"])["jobs"]
        assert [n["status"] for n in nodes] == ["SUCCEEDED", "SUCCEEDED"]
    finally:
        server.stop()


def test_node_ranges_without_a_server() -> None:
    assert parse_target("0:", 4) == (0, 3)
    assert parse_target(":2", 4) == (0, 2)
    assert parse_target(":", 4) == (0, 3)
    assert parse_target("3", 4) == (3, 3)
    for bad in ("", "x", "2:1", "1:2:3", "-1"):
        with pytest.raises(AwsError):
            parse_target(bad, 4)
    props = {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": [
        {"targetNodes": "0:9", "container": {"image": "wide"}},
        {"targetNodes": "4:5", "container": {"image": "narrow"}}]}
    grown = effective_properties({**props, "nodeRangeProperties": [
        {"targetNodes": "0:", "container": {"image": "wide"}},
        {"targetNodes": "4:5", "container": {"image": "narrow"}}]}, {"numNodes": 10})
    assert [c["image"] for c in node_containers(grown)] == \
        ["wide"] * 4 + ["narrow"] * 2 + ["wide"] * 4
    with pytest.raises(AwsError):  # 0:9 is outside a 2-node job
        effective_properties(props, None)
    merged = node_overrides({"nodePropertyOverrides": [
        {"targetNodes": "0:", "containerOverrides": {
            "command": ["a"], "environment": [{"name": "X", "value": "1"}]}},
        {"targetNodes": "1", "containerOverrides": {
            "command": ["b"], "environment": [{"name": "Y", "value": "2"}]}}]}, 2)
    assert merged == [{"command": ["a"], "environment": [{"name": "X", "value": "1"}]},
                      {"command": ["b"], "environment": [{"name": "X", "value": "1"},
                                                         {"name": "Y", "value": "2"}]}]


def test_timeout_covers_the_whole_job_and_dependencies(batch: Any) -> None:
    env = make_env(batch)
    slow = _register(env, [("0:", _container(["sleep", "60"]))], num_nodes=2,
                     timeout={"attemptDurationSeconds": 1})
    job = env.wait(env.submit(slow), timeout=20)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    assert len(_nodes(env, job["jobId"], "FAILED")) == 2

    # Waiting on a dependency, the nodes wait with their job; a failed dependency fails
    # them all; a job that depends on a multi-node job runs once it succeeds.
    blocker = env.submit(env.definition(["sh", "-c", "sleep 0.5; exit 1"]))
    quick = _register(env, [("0:", _container(["true"]))], num_nodes=2)
    blocked = env.submit(quick, dependsOn=[{"jobId": blocker}])
    assert env.describe(blocked)["status"] in ("SUBMITTED", "PENDING")
    assert len(_nodes(env, blocked, "PENDING")) == 2
    failed = env.wait(blocked)
    assert failed["status"] == "FAILED" and failed["statusReason"] == "Dependent Job failed"
    assert len(_nodes(env, blocked, "FAILED")) == 2
    first = env.submit(quick)
    after = env.submit(env.definition(["true"]), dependsOn=[{"jobId": first}])
    assert env.wait(after)["status"] == "SUCCEEDED"
    assert env.describe(first)["status"] == "SUCCEEDED"
