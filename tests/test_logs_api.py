"""CloudWatch Logs through boto3 and the aws CLI against a real kobako server."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server

_n = iter(range(1_000_000))


@pytest.fixture
def logs(server: Server) -> Any:
    return server.client("logs")


@pytest.fixture
def group(logs: Any) -> str:
    name = f"/test/group-{os.getpid()}-{next(_n)}"
    logs.create_log_group(logGroupName=name)
    return name


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def _now() -> int:
    return int(time.time() * 1000)


def test_groups_create_describe_prefix_pagination_delete(logs: Any) -> None:
    prefix = f"/pg-{os.getpid()}-{next(_n)}/"
    for i in range(5):
        logs.create_log_group(logGroupName=f"{prefix}{i}")
    with pytest.raises(ClientError) as dup:
        logs.create_log_group(logGroupName=f"{prefix}0")
    assert _code(dup) == "ResourceAlreadyExistsException"
    page = logs.describe_log_groups(logGroupNamePrefix=prefix, limit=2)
    assert [g["logGroupName"] for g in page["logGroups"]] == [f"{prefix}0", f"{prefix}1"]
    assert page["logGroups"][0]["arn"].endswith(f":log-group:{prefix}0:*")
    names = [g["logGroupName"] for p in logs.get_paginator("describe_log_groups").paginate(
        logGroupNamePrefix=prefix, PaginationConfig={"PageSize": 2}) for g in p["logGroups"]]
    assert names == [f"{prefix}{i}" for i in range(5)]
    logs.delete_log_group(logGroupName=f"{prefix}0")
    with pytest.raises(ClientError) as gone:
        logs.delete_log_group(logGroupName=f"{prefix}0")
    assert _code(gone) == "ResourceNotFoundException"


def test_streams_order_and_pagination(logs: Any, group: str) -> None:
    for name in ("b", "a", "c"):
        logs.create_log_stream(logGroupName=group, logStreamName=name)
    with pytest.raises(ClientError) as dup:
        logs.create_log_stream(logGroupName=group, logStreamName="a")
    assert _code(dup) == "ResourceAlreadyExistsException"
    now = _now()
    logs.put_log_events(logGroupName=group, logStreamName="a",
                        logEvents=[{"timestamp": now + 30, "message": "x"}])
    logs.put_log_events(logGroupName=group, logStreamName="c",
                        logEvents=[{"timestamp": now + 10, "message": "x"}])
    logs.put_log_events(logGroupName=group, logStreamName="b",
                        logEvents=[{"timestamp": now + 20, "message": "x"}])
    by_name = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in by_name] == ["a", "b", "c"]
    by_time = logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime",
                                        descending=True)["logStreams"]
    assert [s["logStreamName"] for s in by_time] == ["a", "b", "c"]
    assert by_time[0]["lastEventTimestamp"] == now + 30
    first = logs.describe_log_streams(logGroupName=group, limit=2)
    rest = logs.describe_log_streams(logGroupName=group, limit=2, nextToken=first["nextToken"])
    assert [s["logStreamName"] for s in rest["logStreams"]] == ["c"]
    assert "nextToken" not in rest
    with pytest.raises(ClientError) as bad:
        logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime",
                                  logStreamNamePrefix="a")
    assert _code(bad) == "InvalidParameterException"
    with pytest.raises(ClientError) as missing:
        logs.describe_log_streams(logGroupName=group + "-nope")
    assert _code(missing) == "ResourceNotFoundException"


def test_put_log_events_validation(logs: Any, group: str) -> None:
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = _now()
    with pytest.raises(ClientError) as order:
        logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
            {"timestamp": now, "message": "b"}, {"timestamp": now - 1, "message": "a"}])
    assert _code(order) == "InvalidParameterException"
    assert "chronological" in order.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as big:
        logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
            {"timestamp": now, "message": "x" * 600_000},
            {"timestamp": now, "message": "y" * 600_000}])
    assert _code(big) == "InvalidParameterException"
    with pytest.raises(ClientError) as no_stream:
        logs.put_log_events(logGroupName=group, logStreamName="nope",
                            logEvents=[{"timestamp": now, "message": "x"}])
    assert _code(no_stream) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as span:
        logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
            {"timestamp": now - 2 * 86_400_000, "message": "a"},
            {"timestamp": now, "message": "b"}])
    assert "24 hours" in span.value.response["Error"]["Message"]
    old = logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": now - 20 * 86_400_000, "message": "old"}])
    assert old["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 0}
    logs.put_log_events(logGroupName=group, logStreamName="s",
                        logEvents=[{"timestamp": now, "message": "fresh"}])
    got = logs.get_log_events(logGroupName=group, logStreamName="s")["events"]
    assert [e["message"] for e in got] == ["fresh"]


def test_get_log_events_tokens_and_time_range(logs: Any, group: str) -> None:
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    base = _now() - 10_000
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": base + i, "message": f"m{i}"} for i in range(10)])
    tail = logs.get_log_events(logGroupName=group, logStreamName="s", limit=3)
    assert [e["message"] for e in tail["events"]] == ["m7", "m8", "m9"]
    head = logs.get_log_events(logGroupName=group, logStreamName="s", limit=4,
                               startFromHead=True)
    assert [e["message"] for e in head["events"]] == ["m0", "m1", "m2", "m3"]
    assert head["nextForwardToken"].startswith("f/")
    assert head["nextBackwardToken"].startswith("b/")
    nxt = logs.get_log_events(logGroupName=group, logStreamName="s", limit=4,
                              nextToken=head["nextForwardToken"])
    assert [e["message"] for e in nxt["events"]] == ["m4", "m5", "m6", "m7"]
    back = logs.get_log_events(logGroupName=group, logStreamName="s", limit=2,
                               nextToken=nxt["nextBackwardToken"])
    assert [e["message"] for e in back["events"]] == ["m2", "m3"]
    end = logs.get_log_events(logGroupName=group, logStreamName="s",
                              nextToken=tail["nextForwardToken"])
    assert end["events"] == [] and end["nextForwardToken"] == tail["nextForwardToken"]
    window = logs.get_log_events(logGroupName=group, logStreamName="s", startTime=base + 2,
                                 endTime=base + 5, startFromHead=True)
    assert [e["message"] for e in window["events"]] == ["m2", "m3", "m4"]
    every: list[str] = []
    kwargs: dict[str, Any] = {"startFromHead": True}
    while True:  # the CLI's loop: follow nextForwardToken until it stops changing
        page = logs.get_log_events(logGroupName=group, logStreamName="s", limit=3, **kwargs)
        every += [e["message"] for e in page["events"]]
        if page["nextForwardToken"] == kwargs.get("nextToken"):
            break
        kwargs = {"nextToken": page["nextForwardToken"]}
    assert every == [f"m{i}" for i in range(10)]
    with pytest.raises(ClientError) as bad:
        logs.get_log_events(logGroupName=group, logStreamName="s", nextToken="garbage")
    assert _code(bad) == "InvalidParameterException"


def test_filter_log_events(logs: Any, group: str) -> None:
    base = _now() - 10_000
    for stream, lines in (("one", ["ERROR disk full", "INFO ok", "WARN slow disk"]),
                          ("two", ["ERROR net down", "INFO all good", "error lower"])):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": base + i * 10 + (stream == "two"), "message": m}
            for i, m in enumerate(lines)])

    def messages(**kwargs: Any) -> list[str]:
        return [e["message"] for e in logs.filter_log_events(logGroupName=group, **kwargs)
                ["events"]]

    assert messages(filterPattern="ERROR") == ["ERROR disk full", "ERROR net down"]
    assert messages(filterPattern="ERROR disk") == ["ERROR disk full"]
    assert messages(filterPattern='"all good"') == ["INFO all good"]
    assert messages(filterPattern="?WARN ?net") == ["ERROR net down", "WARN slow disk"]
    assert messages(filterPattern="disk -WARN") == ["ERROR disk full"]
    assert messages(logStreamNames=["two"]) == ["ERROR net down", "INFO all good", "error lower"]
    assert messages(startTime=base + 10, endTime=base + 11) == ["INFO ok", "INFO all good"]
    pages = list(logs.get_paginator("filter_log_events").paginate(
        logGroupName=group, PaginationConfig={"PageSize": 2}))
    assert [e["message"] for p in pages for e in p["events"]] == messages()
    assert len(pages) == 3
    first = logs.filter_log_events(logGroupName=group, limit=1)["events"][0]
    assert first["logStreamName"] == "one" and first["eventId"]


def test_log_store_append_creates_group_and_stream(tmp_path: Path) -> None:
    from kobako.logs.store import LogStore, Scope
    from kobako.store.db import Database

    store = LogStore(Database(tmp_path / "db.sqlite"))
    scope = Scope("000000000000", "us-east-1")
    store.append(scope, "/aws/batch/job", "def/default/1", [(1, "a"), (2, "b")])
    store.append(scope, "/aws/batch/job", "def/default/1", [(3, "c")])
    group_id = store.group_id(scope, "/aws/batch/job")
    stream_id = store.stream_id(group_id, "def/default/1")
    events = store.stream_events(stream_id, None, None, (-1, 0), None, 10)
    assert [e.message for e in events] == ["a", "b", "c"]


def aws_cli(server: Server, home: Path, *args: str) -> Any:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "HOME": str(home)}
    env.pop("AWS_PROFILE", None)
    done = subprocess.run(["aws", "--endpoint-url", server.url, "--output", "json", *args],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_aws_cli_get_log_events(server: Server, logs: Any, group: str, tmp_path: Path) -> None:
    logs.create_log_stream(logGroupName=group, logStreamName="cli")
    logs.put_log_events(logGroupName=group, logStreamName="cli", logEvents=[
        {"timestamp": _now(), "message": "from the cli"}])
    out = aws_cli(server, tmp_path, "logs", "get-log-events", "--log-group-name", group,
                  "--log-stream-name", "cli", "--start-from-head")
    assert [e["message"] for e in out["events"]] == ["from the cli"]
    found = aws_cli(server, tmp_path, "logs", "filter-log-events", "--log-group-name", group,
                    "--filter-pattern", "cli")
    assert [e["message"] for e in found["events"]] == ["from the cli"]
