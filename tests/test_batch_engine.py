"""The Batch engine alone: store, scheduler and process runtime, no HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kobako.batch.common import dumps, loads
from kobako.batch.engine import SERVER_DIED, Engine, Host, should_retry
from kobako.batch.store import BatchStore, NewJob
from kobako.logs.store import LogStore, Scope
from kobako.runtime.base import AttemptSpec
from kobako.runtime.process import ProcessRuntime
from kobako.store.db import Database

QUEUE = "arn:aws:batch:us-east-1:000000000000:job-queue/q"
CE = "arn:aws:batch:us-east-1:000000000000:compute-environment/ce"


def _store(tmp_path: Path, max_vcpus: float = 4) -> BatchStore:
    store = BatchStore(Database(tmp_path / "kobako.db"))
    store.db.execute(
        "INSERT INTO batch_compute_envs (arn, account, region, name, state, max_vcpus, spec, "
        "created) VALUES (?, '000000000000', 'us-east-1', 'ce', 'ENABLED', ?, '{}', 0)",
        (CE, max_vcpus))
    store.db.execute(
        "INSERT INTO batch_queues (arn, account, region, name, state, priority, ce_order, spec, "
        "created) VALUES (?, '000000000000', 'us-east-1', 'q', 'ENABLED', 1, ?, '{}', 0)",
        (QUEUE, dumps([CE])))
    return store


def _job(job_id: str, command: list[str], deps: list[str] | None = None, vcpus: float = 1,
         retry: dict[str, Any] | None = None, **kwargs: Any) -> NewJob:
    detail = {"jobDefinitionName": "def", "container": {"command": command},
              "retryStrategy": retry, "parameters": {}}
    return NewJob(job_id=job_id, account="000000000000", region="us-east-1", name=job_id,
                  queue_arn=QUEUE, def_arn="arn:def", vcpus=vcpus, memory=None, gpus=0,
                  detail=detail, deps=deps or [], **kwargs)


async def _until(store: BatchStore, job_id: str, statuses: tuple[str, ...],
                 timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = store.job(job_id)
        if row is not None and row["status"] in statuses:
            return row
        await asyncio.sleep(0.01)
    raise AssertionError(f"{job_id} never reached {statuses}: {store.job(job_id)}")


def _engine(store: BatchStore, tmp_path: Path, cpus: float = 8) -> tuple[Engine, LogStore]:
    logs = LogStore(store.db)
    return Engine(store, ProcessRuntime(), logs, tmp_path / "work",
                  Host(cpus=cpus, memory_mib=4096)), logs


def test_should_retry_rules() -> None:
    assert not should_retry(None, 1, 1, "", "x")
    assert should_retry({"attempts": 2}, 1, 1, "", "x")
    assert not should_retry({"attempts": 2}, 2, 1, "", "x")
    rules = {"attempts": 3, "evaluateOnExit": [
        {"onExitCode": "4*", "action": "EXIT"}, {"onStatusReason": "Host EC2*", "action": "RETRY"},
        {"onReason": "*", "action": "EXIT"}]}
    assert not should_retry(rules, 1, 42, "", "Essential container in task exited")
    assert should_retry(rules, 1, None, "", SERVER_DIED)
    assert not should_retry(rules, 1, 1, "", "Essential container in task exited")


def test_dependency_states_without_running(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert([_job("a", ["true"]), _job("b", ["true"], deps=["a"]),
                  _job("c", ["true"], deps=["b"])])
    assert [store.job(j)["status"] for j in "abc"] == ["RUNNABLE", "PENDING", "PENDING"]
    store.stop_waiting(["a"], "gone", cancelled=True)
    for job_id in "bc":
        row = store.job(job_id)
        assert (row["status"], row["status_reason"]) == ("FAILED", "Dependent Job failed")


def test_claim_is_one_update_and_only_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert([_job("a", ["true"]), _job("b", ["true"])])
    with store.db.transaction():
        claimed = store.claim([("a", CE), ("b", CE)])
    assert sorted(r["job_id"] for r in claimed) == ["a", "b"]
    assert all(r["status"] == "STARTING" for r in claimed)
    with store.db.transaction():
        assert store.claim([("a", CE)]) == []


def test_engine_runs_jobs_with_capacity_and_logs(tmp_path: Path) -> None:
    async def main() -> None:
        store = _store(tmp_path, max_vcpus=2)
        engine, logs = _engine(store, tmp_path)
        await engine.start()
        try:
            script = "import time; print('out'); time.sleep(0.3)"
            store.insert([_job("big1", ["python3", "-c", script], vcpus=2),
                          _job("big2", ["python3", "-c", script], vcpus=2),
                          _job("never", ["true"], vcpus=3)])
            engine.wake()
            rows = [await _until(store, j, ("SUCCEEDED",)) for j in ("big1", "big2")]
            first, second = sorted(rows, key=lambda r: r["started_at"])
            assert first["stopped_at"] <= second["started_at"]
            never = store.job("never")
            assert never["status"] == "RUNNABLE" and "JOB_RESOURCE" in never["status_reason"]
            group_id = logs.group_id(Scope("000000000000", "us-east-1"), "/aws/batch/job")
            stream = logs.stream_id(group_id, "def/default/big1")
            assert [e.message for e in logs.stream_events(stream, None, None, (-1, 0), None, 10)
                    ] == ["out"]
        finally:
            await engine.stop()

    asyncio.run(main())


def test_engine_array_sequential_and_failure(tmp_path: Path) -> None:
    async def main() -> None:
        store = _store(tmp_path)
        engine, _ = _engine(store, tmp_path)
        await engine.start()
        try:
            parent = _job("p", ["sh", "-c", 'exit "$AWS_BATCH_JOB_ARRAY_INDEX"'], array_size=3)
            children = [_job(f"p:{i}", parent.detail["container"]["command"],
                             deps=[f"p:{i - 1}"] if i else [], parent_id="p", array_index=i,
                             array_size=3) for i in range(3)]
            store.insert([parent, *children])
            engine.wake()
            row = await _until(store, "p", ("SUCCEEDED", "FAILED"))
            assert row["status"] == "FAILED"
            assert store.children_summary("p") == {"SUCCEEDED": 1, "FAILED": 2}
            assert store.job("p:2")["status_reason"] == "Dependent Job failed"
        finally:
            await engine.stop()

    asyncio.run(main())


def test_recover_retries_or_fails_interrupted_attempts(tmp_path: Path) -> None:
    async def main() -> None:
        store = _store(tmp_path)
        store.insert([_job("retry", ["true"], retry={"attempts": 2}), _job("once", ["true"])])
        store.db.execute("UPDATE batch_jobs SET status = 'RUNNING', ce_arn = ?, "
                         "attempt_started = 1", (CE,))
        engine, _ = _engine(store, tmp_path)
        await engine.start()
        try:
            once = await _until(store, "once", ("FAILED",))
            assert once["status_reason"] == SERVER_DIED
            retried = await _until(store, "retry", ("SUCCEEDED",))
            assert loads(retried["attempts"])[0]["statusReason"] == SERVER_DIED
        finally:
            await engine.stop()

    asyncio.run(main())


def test_process_runtime_streams_kills_group_and_limits_memory(tmp_path: Path) -> None:
    async def collect(lines: AsyncIterator[Any]) -> list[tuple[str, str]]:
        return [(line.stream, line.text) async for line in lines]

    async def main() -> None:
        runtime = ProcessRuntime()
        spec = AttemptSpec(argv=["sh", "-c", "echo out; echo err >&2; exit 5"], env={},
                           workdir=tmp_path / "a")
        attempt = await runtime.start(spec)
        lines = asyncio.create_task(collect(attempt.lines()))
        assert await attempt.wait() == 5
        assert sorted(await lines) == [("stderr", "err"), ("stdout", "out")]
        spec = AttemptSpec(argv=["sh", "-c", "sleep 30 & sleep 30"], env={},
                           workdir=tmp_path / "b")
        attempt = await runtime.start(spec)
        await attempt.kill()
        assert await asyncio.wait_for(attempt.wait(), 5) == 137
        hog = AttemptSpec(argv=["python3", "-c", "b = bytearray(512 * 1024 * 1024)"], env={},
                          workdir=tmp_path / "c", memory_mib=256)
        attempt = await runtime.start(hog)
        assert await attempt.wait() != 0
        await runtime.close()

    asyncio.run(main())


def test_start_error_for_missing_executable(tmp_path: Path) -> None:
    from kobako.runtime.base import StartError

    async def main() -> None:
        with pytest.raises(StartError, match="executable file not found"):
            await ProcessRuntime().start(AttemptSpec(["no-such-binary-kobako"], {}, tmp_path))

    asyncio.run(main())
