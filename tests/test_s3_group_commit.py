"""Group commit of small PUTs written as files: rows of one loop turn share a transaction,
bodies of one round share the blob writer thread; inline bodies commit each PUT at once;
whatever was acknowledged survives kill -9 either way."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import start_server
from kobako.store.blobs import FANOUT_RUN, LocalBlobStore
from kobako.store.db import Database
from s3_helpers import AcknowledgedPuts


def test_grouped_writes_share_one_commit_and_fail_alone(tmp_path: Path) -> None:
    db = Database(tmp_path / "meta.db")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    commits: list[str] = []
    db._conn.set_trace_callback(
        lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)

    def insert(key: str) -> str:
        db.execute("INSERT INTO t (k) VALUES (?)", (key,))
        return key

    def failing() -> str:
        db.execute("INSERT INTO t (k) VALUES ('doomed')")
        raise ValueError("this write fails")

    async def main() -> list[str | BaseException]:
        futures = [db.grouped(lambda key=f"k{n}": insert(key)) for n in range(8)]
        futures.insert(3, db.grouped(failing))
        return list(await asyncio.gather(*futures, return_exceptions=True))

    outcomes = asyncio.run(main())
    assert len(commits) == 1  # nine writes, one transaction
    assert isinstance(outcomes.pop(3), ValueError)
    assert outcomes == [f"k{n}" for n in range(8)]
    assert sorted(r["k"] for r in db.query("SELECT k FROM t")) == [f"k{n}" for n in range(8)]
    db.close()


def test_grouped_write_resolves_after_its_commit(tmp_path: Path) -> None:
    db = Database(tmp_path / "meta.db")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")

    async def main() -> None:
        await db.grouped(lambda: db.execute("INSERT INTO t (k) VALUES ('x')"))
        assert not db._conn.in_transaction
        # Another connection sees the row: it was committed before the caller resumed.
        other = Database(tmp_path / "meta.db")
        assert other.one("SELECT k FROM t") is not None
        other.close()

    asyncio.run(main())
    db.close()


def test_group_writer_writes_every_body_durably(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "s3")
    bodies = [os.urandom(100 + n * 37) for n in range(40)]

    async def main() -> list[str]:
        return list(await asyncio.gather(
            *(store.write_grouped([body[:50], body[50:]]) for body in bodies)))

    ids = asyncio.run(main())
    assert len(set(ids)) == len(ids)
    for blob_id, body in zip(ids, bodies, strict=True):
        assert store.path(blob_id).read_bytes() == body
    assert not list((tmp_path / "s3" / "tmp").iterdir())  # every temp file renamed
    # New ids share their fan-out directories for a run of FANOUT_RUN ids.
    assert len({blob_id[:4] for blob_id in ids}) <= 1 + len(ids) // FANOUT_RUN


# Small bodies are stored inline (committed by each PUT at once); with inline_bytes = 0
# every body is a file, and the rows go through the group commit.
BODY_PATHS = pytest.mark.parametrize("inline_bytes", [None, 0], ids=["inline", "files"])


def _config(tmp_path: Path, inline_bytes: int | None) -> Path | None:
    if inline_bytes is None:
        return None
    config = tmp_path / "kobako.toml"
    config.write_text(f"inline_bytes = {inline_bytes}\n")
    return config


@BODY_PATHS
def test_conditional_puts_in_one_group_see_each_other(tmp_path: Path,
                                                      inline_bytes: int | None) -> None:
    server = start_server(tmp_path / "data", config=_config(tmp_path, inline_bytes))
    try:
        server.client("s3").create_bucket(Bucket="cond")
        barrier = threading.Barrier(8)
        outcomes: list[str] = []
        lock = threading.Lock()

        def put(worker: int) -> None:
            client = server.client("s3")
            barrier.wait()
            try:
                client.put_object(Bucket="cond", Key="once", Body=f"w{worker}".encode(),
                                  IfNoneMatch="*")
                outcome = "ok"
            except ClientError as error:
                outcome = error.response["Error"]["Code"]
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=put, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert outcomes.count("ok") == 1, outcomes
        assert set(outcomes) <= {"ok", "PreconditionFailed", "ConditionalRequestConflict"}
    finally:
        server.stop()
    assert " -> 500 " not in server.log()


@BODY_PATHS
@pytest.mark.parametrize("workers", [16])
def test_concurrent_acknowledged_puts_survive_kill_9(tmp_path: Path, workers: int,
                                                     inline_bytes: int | None) -> None:
    """Bursts of PUTs that arrive together (so that they share group commits); the
    server is killed right after a burst was acknowledged."""
    data_dir = tmp_path / "data"
    config = _config(tmp_path, inline_bytes)
    server = start_server(data_dir, config=config)
    puts = AcknowledgedPuts("group")
    barrier = threading.Barrier(workers)
    try:
        server.client("s3").create_bucket(Bucket="group")

        def writer(worker: int) -> None:
            client = server.client("s3")
            for burst in range(10_000):
                try:
                    barrier.wait(timeout=30)
                except threading.BrokenBarrierError:
                    return
                if puts.stop.is_set():
                    return
                body = os.urandom(2000 + worker * 13 + burst)
                if not puts.put(client, f"b{burst}/w{worker}", body):
                    barrier.abort()
                    return

        expected = puts.kill_server_after(server, writer, workers, count=10 * workers,
                                          poll_s=0.005, on_kill=barrier.abort)
    finally:
        server.stop()
    restarted = start_server(data_dir, config=config)
    try:
        puts.assert_intact(restarted.client("s3"), expected)
    finally:
        restarted.stop()
    assert " -> 500 " not in restarted.log()
