"""kill -9 the server mid-job, restart it: nothing disappears, interrupted attempts resolve."""

from __future__ import annotations

from pathlib import Path

from batch_helpers import make_env
from conftest import start_server


def test_kill_mid_job_then_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        env = make_env(server.client("batch"), max_vcpus=1)
        marker = tmp_path / "attempts"
        # First attempt sleeps (and is killed with the server); the retry succeeds.
        script = (f"import os, time; f = open({str(marker)!r}, 'a'); f.write('x'); f.close(); "
                  "time.sleep(30 if os.environ['AWS_BATCH_JOB_ATTEMPT'] == '1' else 0)")
        retried_def = env.definition(["python3", "-c", script], retryStrategy={"attempts": 2})
        retried = env.submit(retried_def)
        env.wait(retried, ("RUNNING",))
        no_retry = env.definition(["sleep", "30"])
        queued = env.submit(no_retry)  # waits: the CE has one vCPU
        assert env.describe(queued)["status"] == "RUNNABLE"
        server.kill()
        server = start_server(data)
        env.batch = server.client("batch")
        job = env.wait(retried)
        assert job["status"] == "SUCCEEDED", job
        assert len(job["attempts"]) == 2
        assert job["attempts"][0]["statusReason"].startswith("Host EC2")
        assert marker.read_text() == "xx"
        # The queued job survived the crash and runs now; kill -9 again while it runs.
        env.wait(queued, ("RUNNING",))
        server.kill()
        server = start_server(data)
        env.batch = server.client("batch")
        failed = env.wait(queued)
        assert failed["status"] == "FAILED"
        assert "kobako server stopped" in failed["statusReason"]
        assert len(failed["attempts"]) == 1
    finally:
        server.stop()
