"""Start-up (issue #7: first answer well under 1 s): S3 is built before the server
listens, every other service just after, and a request for one of those waits for it.

Timing is not asserted (the suite forbids it); what makes the start fast is: the
services built after listening (`DeferredServices`: built once, started before any
of their requests is answered), what building the app imports, and the model cache.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import start_server
from kobako.protocol.codecs import JsonCodec
from kobako.protocol.errors import AwsError
from kobako.server.deferred import DeferredServices
from kobako.server.service import Service

# ------------------------------------------------------------------ DeferredServices


def _service(name: str, signing: str, started: list[str], stopped: list[str],
             gate: asyncio.Event | None = None) -> Service:
    async def start() -> None:
        if gate is not None:
            await gate.wait()
        started.append(name)

    async def stop() -> None:
        stopped.append(name)

    # Any codec will do: DeferredServices never calls it.
    from kobako.spec import service_model
    return Service(name=name, codec=JsonCodec(service_model("logs")), handlers={},
                   signing_names=(signing,), startup=[start], shutdown=[stop])


def test_deferred_services_build_once_under_concurrency() -> None:
    """Fifty requests arrive while the services are still being built: one build, in a
    worker thread, and none of them gets the services before every start-up hook ran."""
    builds: list[int] = []
    started: list[str] = []
    stopped: list[str] = []

    async def main() -> None:
        gate = asyncio.Event()
        loop_thread = threading.get_ident()

        def build() -> list[Service]:
            builds.append(threading.get_ident())
            return [_service("one", "one", started, stopped),
                    _service("two", "two", started, stopped, gate)]

        routed: list[list[str]] = []

        def on_ready(services: list[Service]) -> None:  # before any waiter resumes
            assert not any(w.done() for w in waiters)
            routed.append([s.name for s in services])

        deferred = DeferredServices(("one", "two"), build, on_ready)
        waiters = [asyncio.ensure_future(deferred.ready()) for _ in range(50)]
        for _ in range(50):  # the build and the first hook finish; the second hangs
            await asyncio.sleep(0.01)
            if started == ["one"]:
                break
        assert started == ["one"]
        assert not any(w.done() for w in waiters), "answered before start-up finished"
        gate.set()
        results = await asyncio.gather(*waiters)
        assert all(r is results[0] for r in results)
        assert [s.name for s in results[0]] == ["one", "two"]
        assert len(builds) == 1 and builds[0] != loop_thread
        assert started == ["one", "two"] and routed == [["one", "two"]]
        deferred.start()  # again: nothing happens
        await deferred.ready()
        assert len(builds) == 1 and started == ["one", "two"]
        await deferred.close()
        assert stopped == ["one", "two"]

    asyncio.run(main())


def test_deferred_services_that_fail_answer_service_unavailable() -> None:
    async def main() -> None:
        def build() -> list[Service]:
            raise RuntimeError("the batch schema is broken")

        deferred = DeferredServices(("one",), build)
        results = await asyncio.gather(*(deferred.ready() for _ in range(3)),
                                       return_exceptions=True)
        for result in results:
            assert isinstance(result, AwsError)
            assert (result.code, result.status) == ("ServiceUnavailable", 503)
            assert "the batch schema is broken" in result.message
        await deferred.close()  # nothing started, nothing to stop, no error

        # Built, but not what routing was told to expect: refused the same way.
        wrong = DeferredServices(("one", "two"), lambda: [_service("one", "one", [], [])])
        with pytest.raises(AwsError) as raised:
            await wrong.ready()
        assert raised.value.status == 503 and "declared" in raised.value.message

        # Shut down before anything asked for them: they are never built.
        never = DeferredServices(("one",), lambda: pytest.fail("built while shutting down"))
        await never.close()
        never.start()
        with pytest.raises(AwsError) as raised:
            await never.ready()
        assert raised.value.status == 503

    asyncio.run(main())


# ------------------------------------------------------------------ what start imports


def test_building_the_app_imports_only_what_s3_needs(tmp_path: Path) -> None:
    """What the server does before it listens (cli.serve: build_app) leaves the other
    services' modules and their heavy dependencies unimported: they load later."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kobako.config import Config\n"
        "from kobako.server.build import build_app\n"
        f"build_app(Config.load(Path({str(tmp_path / 'data')!r}), None))\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded = set(done.stdout.split())
    assert "kobako.s3.service" in loaded  # the check itself works
    heavy = [name for name in loaded if name.split(".")[0] in ("docker", "jsonata", "requests")
             or name.startswith(("kobako.batch", "kobako.stepfunctions", "kobako.sagemaker",
                                 "kobako.runtime", "kobako.logs", "kobako.iam", "kobako.sts"))]
    assert heavy == []


# ------------------------------------------------------------------ the model cache


def test_model_cache_is_used_and_survives_damage(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.loaders import Loader

    from kobako import spec

    monkeypatch.setenv("KOBAKO_CACHE_DIR", str(tmp_path))
    expected = Loader().load_service_model("sts", "service-2")
    first = spec.load_model_data("sts")  # from botocore; writes the cache
    assert first == expected
    (path,) = (tmp_path / "models").glob("sts-*.marshal")
    assert spec.load_model_data("sts") == expected  # from the cache

    # The cache is what is read: a (valid) model written there comes back.
    import marshal
    marked = dict(first, metadata={**first["metadata"], "kobakoMark": "from-cache"})
    path.write_bytes(marshal.dumps(marked))
    assert spec.load_model_data("sts")["metadata"]["kobakoMark"] == "from-cache"

    # Damaged or not a model: ignored, and rewritten from botocore.
    for junk in (b"\x00garbage", marshal.dumps({"not": "a model"}), b""):
        path.write_bytes(junk)
        assert spec.load_model_data("sts") == expected
        assert marshal.loads(path.read_bytes()) == expected

    # A cache directory that cannot be written: the model still loads.
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("KOBAKO_CACHE_DIR", str(blocked))
    assert spec.load_model_data("sts") == expected


# ------------------------------------------------------------------ a real server


def _unsigned_logs_call(url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + "/", data=b"{}", method="POST",
        headers={"X-Amz-Target": "Logs_20140328.DescribeLogGroups",
                 "Content-Type": "application/x-amz-json-1.1"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_every_service_answers_right_after_start(tmp_path: Path) -> None:
    """The first requests, all at once and before anything else, to services built after
    the server began listening: each waits for them and gets its real answer (none is
    refused as unknown, none fails), and an unsigned JSON call naming a deferred
    service's target gets that service's JSON error, not S3's XML."""
    server = start_server(tmp_path / "data")
    try:
        calls: dict[str, Any] = {
            "sts": lambda: server.client("sts").get_caller_identity()["Account"],
            "batch": lambda: server.client("batch").describe_job_queues()["jobQueues"],
            "stepfunctions": lambda: server.client("stepfunctions")
            .list_state_machines()["stateMachines"],
            "logs": lambda: server.client("logs").describe_log_groups()["logGroups"],
            "iam": lambda: server.client("iam").list_roles()["Roles"],
            "sagemaker": lambda: server.client("sagemaker")
            .list_training_jobs()["TrainingJobSummaries"],
            "s3": lambda: server.client("s3").list_buckets()["Buckets"],
            "unsigned": lambda: _unsigned_logs_call(server.url),
        }
        with ThreadPoolExecutor(len(calls)) as pool:
            futures = {name: pool.submit(call) for name, call in calls.items()}
            answers = {name: future.result(timeout=120) for name, future in futures.items()}
        assert answers["sts"] == "000000000000"
        for name in ("batch", "stepfunctions", "logs", "iam", "sagemaker", "s3"):
            assert answers[name] == [], name
        status, body = answers["unsigned"]
        assert status == 403 and "AccessDenied" in str(body.get("__type")), body
        log = server.log()
        assert "services started: sts, iam, logs, batch, stepfunctions, sagemaker" in log
    finally:
        server.stop()
    assert " -> 500 " not in server.log() and " -> 503 " not in server.log()
