"""The process runtime's bind mounts: an attempt sees a host directory at a fixed path
(SageMaker's /opt/ml) in a mount namespace of its own, and runs without it, saying why
in the log, where the server may not bind."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from pathlib import Path

import pytest

from kobako.runtime import namespace
from kobako.runtime.base import AttemptSpec
from kobako.runtime.process import ProcessRuntime

TARGET = "/opt/ml"


@pytest.mark.skipif(os.geteuid() != 0, reason="binding needs root (CAP_SYS_ADMIN)")
def test_an_attempt_sees_its_directory_at_the_bound_path(tmp_path: Path) -> None:
    job, config = tmp_path / "job", tmp_path / "host-2-config"
    (job / "input" / "config").mkdir(parents=True)
    config.mkdir()
    (config / "resourceconfig.json").write_text('{"current_host": "algo-2"}')
    probe = f"probe-{uuid.uuid4().hex}"

    async def main() -> None:
        runtime = ProcessRuntime()
        script = (f"echo hi > {TARGET}/{probe} && cat {TARGET}/input/config/resourceconfig.json "
                  f"> {TARGET}/seen.json && grep -c ' {TARGET} ' /proc/self/mountinfo")
        spec = AttemptSpec(argv=["sh", "-c", script], env={}, workdir=tmp_path / "cwd",
                           memory_mib=512, binds=((job, TARGET),
                                                  (config, f"{TARGET}/input/config")))
        attempt = await runtime.start(spec)
        lines = [line.text async for line in attempt.lines()]
        assert await attempt.wait() == 0, lines
        assert lines == ["1"]
        # Killing still reaches the whole process group inside the namespace.
        sleeper = await runtime.start(AttemptSpec(
            argv=["sh", "-c", "sleep 30 & sleep 30"], env={}, workdir=tmp_path / "cwd",
            binds=((job, TARGET),)))
        await sleeper.kill()
        assert await asyncio.wait_for(sleeper.wait(), 5) == 137
        await runtime.close()

    asyncio.run(main())
    assert (job / probe).read_text() == "hi\n"
    assert (job / "seen.json").read_text() == '{"current_host": "algo-2"}'
    assert not Path(TARGET, probe).exists()  # the host's /opt/ml is only a mount point
    assert not (job / "input" / "config" / "resourceconfig.json").exists()


def test_without_privileges_the_attempt_runs_without_binds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(namespace.os, "geteuid", lambda: 1000)
    job = tmp_path / "job"

    async def main() -> None:
        runtime = ProcessRuntime()
        for _ in range(2):
            spec = AttemptSpec(argv=["sh", "-c", "echo ran > out.txt"], env={},
                               workdir=job, binds=((job, TARGET),))
            attempt = await runtime.start(spec)
            assert await attempt.wait() == 0
        await runtime.close()

    with caplog.at_level(logging.WARNING, logger="kobako.runtime"):
        asyncio.run(main())
    assert (job / "out.txt").read_text() == "ran\n"
    warnings = [r.getMessage() for r in caplog.records if "process runtime" in r.getMessage()]
    assert len(warnings) == 1  # said once, not per attempt
    assert "not running as root" in warnings[0] and TARGET in warnings[0]
