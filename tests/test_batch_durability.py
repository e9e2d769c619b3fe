"""Every acknowledged SubmitJob survives kill -9, including the fast path (a job with no
dependencies is inserted RUNNABLE in one statement) and jobs the scheduler was busy
claiming and starting when the server died."""

from __future__ import annotations

from pathlib import Path

from batch_helpers import make_env
from conftest import start_server


def test_acknowledged_submits_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        env = make_env(server.client("batch"), max_vcpus=2)
        name = env.definition(["true"])
        ids = [env.submit(name) for _ in range(60)]
        server.kill()
        server = start_server(data)
        env.batch = server.client("batch")
        jobs = [env.wait(job_id, timeout=60) for job_id in ids]
        # Interrupted attempts fail ("server stopped"), the rest run: none is lost.
        assert len(jobs) == len(ids)
        assert all(j["status"] in ("SUCCEEDED", "FAILED") for j in jobs)
        assert all(j["status"] == "SUCCEEDED" or "kobako server stopped" in j["statusReason"]
                   for j in jobs)
    finally:
        server.stop()
