"""Fair-share scheduling through boto3: scheduling policies, share identifiers, and a
start order that follows the weights."""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any

import pytest
from botocore.exceptions import ClientError

from batch_helpers import Env, make_env
from conftest import Server
from kobako.batch.fairshare import Policy, ShareUsage

_n = iter(range(1_000_000))


@pytest.fixture
def batch(server: Server) -> Any:
    return server.client("batch")


def _message(error: pytest.ExceptionInfo[ClientError]) -> str:
    assert error.value.response["Error"]["Code"] == "ClientException"
    return str(error.value.response["Error"]["Message"])


def _policy(batch: Any, shares: list[dict[str, Any]], decay: int = 3600) -> str:
    out = batch.create_scheduling_policy(
        name=f"fs-{next(_n)}", tags={"team": "hpc"},
        fairsharePolicy={"shareDecaySeconds": decay, "computeReservation": 0,
                         "shareDistribution": shares})
    return str(out["arn"])


def _fair_env(batch: Any, policy: str, max_vcpus: int = 1) -> Env:
    env = make_env(batch, max_vcpus=max_vcpus)
    batch.update_compute_environment(computeEnvironment=env.ce, state="DISABLED")
    env.queue = batch.create_job_queue(
        jobQueueName=f"{env.prefix}-fair", priority=1, schedulingPolicyArn=policy,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env.ce}])["jobQueueArn"]
    return env


def test_policy_weights_and_usage_rules() -> None:
    policy = Policy.parse({"fairsharePolicy": {"shareDecaySeconds": 60, "shareDistribution": [
        {"shareIdentifier": "team*", "weightFactor": 0.5},
        {"shareIdentifier": "teamA*", "weightFactor": 0.25},
        {"shareIdentifier": "teamAB", "weightFactor": 2}]}})
    assert policy.weight("teamAB") == 2
    assert policy.weight("teamAx") == 0.25
    assert policy.weight("teamB") == 0.5
    assert policy.weight("other") == 1.0
    usage = ShareUsage()
    usage.charge("q", "a", 10, 60, now_s=0)
    assert usage.value("q", "a", 60, 60, running_vcpus=0) == pytest.approx(10 / 2.718281828)
    assert usage.value("q", "a", 0, 60, running_vcpus=2) == 2  # decay 0: current usage only
    reserved = Policy.parse({"fairsharePolicy": {"computeReservation": 50}})
    assert reserved.usable_fraction(1) == 0.5 and reserved.usable_fraction(2) == 0.75


def test_scheduling_policy_crud(batch: Any) -> None:
    arn = _policy(batch, [{"shareIdentifier": "a", "weightFactor": 1},
                          {"shareIdentifier": "b*", "weightFactor": 0.5}])
    assert ":scheduling-policy/fs-" in arn
    found = batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"]
    assert found[0]["arn"] == arn and found[0]["tags"] == {"team": "hpc"}
    assert found[0]["fairsharePolicy"]["shareDistribution"][1] == {
        "shareIdentifier": "b*", "weightFactor": 0.5}
    assert {"arn": arn} in batch.list_scheduling_policies()["schedulingPolicies"]
    batch.update_scheduling_policy(arn=arn, fairsharePolicy={"shareDecaySeconds": 10})
    updated = batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"][0]
    assert updated["fairsharePolicy"] == {"shareDecaySeconds": 10}
    with pytest.raises(ClientError) as bad:
        batch.create_scheduling_policy(name="bad-weight", fairsharePolicy={
            "shareDistribution": [{"shareIdentifier": "x", "weightFactor": 5000}]})
    assert "weightFactor" in _message(bad)
    env = _fair_env(batch, arn)
    queue = batch.describe_job_queues(jobQueues=[env.queue])["jobQueues"][0]
    assert queue["schedulingPolicyArn"] == arn
    with pytest.raises(ClientError) as in_use:
        batch.delete_scheduling_policy(arn=arn)
    assert "uses it" in _message(in_use)
    batch.delete_job_queue(jobQueue=env.queue)
    batch.delete_scheduling_policy(arn=arn)
    assert batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"] == []
    with pytest.raises(ClientError):
        batch.create_job_queue(jobQueueName=f"{env.prefix}-gone", priority=1,
                               schedulingPolicyArn=arn,
                               computeEnvironmentOrder=[{"order": 1,
                                                         "computeEnvironment": env.ce}])


def test_share_identifier_rules(batch: Any) -> None:
    fifo = make_env(batch)
    name = fifo.definition(["true"])
    with pytest.raises(ClientError) as refused:
        fifo.submit(name, shareIdentifier="a")
    assert "shareIdentifier" in _message(refused)
    fair = _fair_env(batch, _policy(batch, []))
    with pytest.raises(ClientError) as missing:
        fair.submit(name)
    assert _message(missing) == "shareIdentifier must be specified."
    with pytest.raises(ClientError):
        fair.submit(name, shareIdentifier="a", schedulingPriorityOverride=10_000)
    job_id = fair.submit(name, shareIdentifier="a", schedulingPriorityOverride=7)
    job = fair.describe(job_id)
    assert job["shareIdentifier"] == "a" and job["schedulingPriority"] == 7
    listed = batch.list_jobs(jobQueue=fair.queue, jobStatus="RUNNABLE")["jobSummaryList"]
    assert listed[0]["shareIdentifier"] == "a"
    with pytest.raises(ClientError):
        batch.update_job_queue(jobQueue=fifo.queue,
                               schedulingPolicyArn=_policy(batch, []))
    batch.cancel_job(jobId=job_id, reason="done")


def test_start_order_follows_the_weights(batch: Any) -> None:
    # weightFactor 1 against 3: share "heavy" gets three times the compute of "light".
    policy = _policy(batch, [{"shareIdentifier": "heavy", "weightFactor": 1},
                             {"shareIdentifier": "light", "weightFactor": 3}])
    env = _fair_env(batch, policy, max_vcpus=1)
    name = env.definition(["true"])
    share_of: dict[str, str] = {}
    for _ in range(12):
        for share in ("light", "heavy"):
            share_of[env.submit(name, shareIdentifier=share)] = share
    # Scheduling priority orders jobs within a share.
    urgent = env.submit(name, shareIdentifier="light", schedulingPriorityOverride=50)
    share_of[urgent] = "light"
    batch.update_compute_environment(computeEnvironment=env.ce, state="ENABLED")
    jobs = [env.wait(job_id, timeout=60) for job_id in share_of]
    assert all(j["status"] == "SUCCEEDED" for j in jobs)
    order = sorted(jobs, key=lambda j: (j["startedAt"], j["stoppedAt"]))
    for before, after in itertools.pairwise(order):
        assert before["stoppedAt"] <= after["startedAt"], "capacity 1 ran two jobs at once"
    shares = [share_of[j["jobId"]] for j in order]
    assert shares[:16].count("heavy") == 12, shares
    light = [j["jobId"] for j in order if share_of[j["jobId"]] == "light"]
    assert light[0] == urgent, "the higher schedulingPriority did not go first in its share"


def test_propagate_tags_and_describe_shape(server: Server, batch: Any) -> None:
    env = make_env(batch)
    name = env.definition(["true"], tags={"team": "def", "cost": "c1"}, propagateTags=True)
    job_id = env.submit(name, tags={"team": "job"})
    job = env.wait(job_id)
    assert job["propagateTags"] is True
    assert job["tags"] == {"team": "job"}
    task = job["container"]["taskArn"]
    with sqlite3.connect(server.data_dir / "kobako.db") as db:
        rows = dict(db.execute("SELECT key, value FROM batch_tags WHERE arn = ?", (task,)))
    assert rows == {"team": "job", "cost": "c1"}
    for key in ("jobArn", "jobQueue", "jobDefinition", "platformCapabilities", "container"):
        assert job[key], key
    assert job["isCancelled"] is False and job["isTerminated"] is False
    assert "eksAttempts" not in job and "eksProperties" not in job
    for key in ("environment", "volumes", "mountPoints", "ulimits", "secrets",
                "networkInterfaces", "resourceRequirements"):
        assert isinstance(job["container"][key], list), key
    plain = env.wait(env.submit(env.definition(["true"], tags={"team": "def"})))
    with sqlite3.connect(server.data_dir / "kobako.db") as db:
        assert db.execute("SELECT count(*) FROM batch_tags WHERE arn = ?",
                          (plain["container"]["taskArn"],)).fetchone()[0] == 0
