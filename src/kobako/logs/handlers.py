"""The CloudWatch Logs operations: validate like AWS, then call `LogStore`."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

from kobako.logs.filters import compile_pattern
from kobako.logs.store import Event, LogStore, Scope, invalid, now_ms
from kobako.server.service import Handler, RequestContext
from kobako.store.db import Row

MAX_BATCH_BYTES = 1_048_576
MAX_BATCH_EVENTS = 10_000
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 1_048_576 - EVENT_OVERHEAD
DAY_MS = 24 * 3600 * 1000
TOO_NEW_MS = 2 * 3600 * 1000
TOO_OLD_MS = 14 * DAY_MS


def _scope(ctx: RequestContext) -> Scope:
    return Scope(ctx.account_id, ctx.region)


def _required(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not value:
        raise invalid(f"1 validation error detected: Value null at '{name}' failed to satisfy "
                      "constraint: Member must not be null")
    return str(value)


def _group_name(params: dict[str, Any]) -> str:
    """logGroupName, or the name inside a logGroupIdentifier (name or ARN)."""
    if params.get("logGroupName"):
        return str(params["logGroupName"])
    ident = str(params.get("logGroupIdentifier") or "")
    if ident.startswith("arn:"):
        ident = ident.split(":log-group:", 1)[-1].removesuffix(":*")
    if not ident:
        _required(params, "logGroupName")
    return ident


def _limit(params: dict[str, Any], default: int, most: int) -> int:
    limit = params.get("limit")
    if limit is None:
        return default
    if not 1 <= int(limit) <= most:
        raise invalid(f"1 validation error detected: Value '{limit}' at 'limit' failed to "
                      f"satisfy constraint: Member must have value less than or equal to {most}")
    return int(limit)


def _offset_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError:
        raise invalid("The specified nextToken is invalid.") from None


def _make_offset_token(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def group_arn(scope: Scope, name: str) -> str:
    return f"arn:aws:logs:{scope.region}:{scope.account}:log-group:{name}"


def _group_out(scope: Scope, row: Row) -> dict[str, Any]:
    arn = group_arn(scope, str(row["name"]))
    out: dict[str, Any] = {
        "logGroupName": row["name"],
        "creationTime": row["created"],
        "metricFilterCount": 0,
        "arn": arn + ":*",
        "logGroupArn": arn,
        "storedBytes": row["stored"],
        "logGroupClass": row["log_class"],
    }
    if row["retention"] is not None:
        out["retentionInDays"] = row["retention"]
    if row["kms_key"]:
        out["kmsKeyId"] = row["kms_key"]
    return out


def _stream_out(scope: Scope, group: str, row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "logStreamName": row["name"],
        "creationTime": row["created"],
        "arn": f"{group_arn(scope, group)}:log-stream:{row['name']}",
        "storedBytes": row["stored_bytes"],
    }
    for key, column in (("firstEventTimestamp", "first_ts"), ("lastEventTimestamp", "last_ts"),
                        ("lastIngestionTime", "last_ingest")):
        if row[column] is not None:
            out[key] = row[column]
    return out


def _event_out(event: Event, with_stream: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timestamp": event.timestamp,
        "message": event.message,
        "ingestionTime": event.ingestion,
    }
    if with_stream:
        out["logStreamName"] = event.stream
        out["eventId"] = f"{event.timestamp:020d}{event.id:036d}"
    return out


def _key_token(direction: str, key: tuple[int, int]) -> str:
    """AWS-shaped stream tokens: 'f/' or 'b/', 56 digits (timestamp, event id), '/s'."""
    return f"{direction}/{key[0]:020d}{key[1]:036d}/s"


def _parse_key_token(token: str) -> tuple[str, tuple[int, int]]:
    parts = token.split("/")
    if len(parts) != 3 or parts[0] not in ("f", "b") or len(parts[1]) != 56 \
            or not parts[1].isdigit():
        raise invalid("The specified nextToken is invalid.")
    return parts[0], (int(parts[1][:20]), int(parts[1][20:]))


def build_handlers(store: LogStore) -> dict[str, Handler]:
    async def create_log_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = _required(params, "logGroupName")
        if len(name) > 512:
            raise invalid("Log group name must be at most 512 characters.")
        store.create_group(_scope(ctx), name, params.get("kmsKeyId"), params.get("logGroupClass"))
        return {}

    async def delete_log_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        store.delete_group(_scope(ctx), _required(params, "logGroupName"))
        return {}

    async def put_retention_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        store.set_retention(_scope(ctx), _required(params, "logGroupName"),
                            int(params.get("retentionInDays") or 0) or None)
        return {}

    async def delete_retention_policy(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        store.set_retention(_scope(ctx), _required(params, "logGroupName"), None)
        return {}

    async def describe_log_groups(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        scope = _scope(ctx)
        prefix = str(params.get("logGroupNamePrefix") or "")
        pattern = str(params.get("logGroupNamePattern") or "")
        if prefix and pattern:
            raise invalid("LogGroup name prefix and LogGroup name pattern are mutually exclusive "
                          "parameters.")
        limit = _limit(params, 50, 50)
        after = ""
        if params.get("nextToken"):
            try:
                after = base64.urlsafe_b64decode(str(params["nextToken"]).encode()).decode()
            except ValueError:
                raise invalid("The specified nextToken is invalid.") from None
        rows = store.list_groups(scope, prefix, pattern, after, limit + 1)
        out: dict[str, Any] = {"logGroups": [_group_out(scope, r) for r in rows[:limit]]}
        if len(rows) > limit:
            out["nextToken"] = base64.urlsafe_b64encode(
                str(rows[limit - 1]["name"]).encode()).decode()
        return out

    async def create_log_stream(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = _required(params, "logStreamName")
        if ":" in name or "*" in name:
            raise invalid("Log stream name must not contain ':' or '*'.")
        store.create_stream(_scope(ctx), _required(params, "logGroupName"), name)
        return {}

    async def delete_log_stream(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        store.delete_stream(_scope(ctx), _required(params, "logGroupName"),
                            _required(params, "logStreamName"))
        return {}

    async def describe_log_streams(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        scope = _scope(ctx)
        group = _group_name(params)
        group_id = store.group_id(scope, group)
        prefix = str(params.get("logStreamNamePrefix") or "")
        order = str(params.get("orderBy") or "LogStreamName")
        if order not in ("LogStreamName", "LastEventTime"):
            raise invalid(f"Invalid orderBy: {order}")
        if order == "LastEventTime" and prefix:
            raise invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        limit = _limit(params, 50, 50)
        offset = _offset_token(params.get("nextToken"))
        rows = store.list_streams(group_id, prefix, order == "LastEventTime",
                                  bool(params.get("descending")), offset, limit + 1)
        out: dict[str, Any] = {"logStreams": [_stream_out(scope, group, r) for r in rows[:limit]]}
        if len(rows) > limit:
            out["nextToken"] = _make_offset_token(offset + limit)
        return out

    async def put_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        scope = _scope(ctx)
        group_id = store.group_id(scope, _required(params, "logGroupName"))
        stream_id = store.stream_id(group_id, _required(params, "logStreamName"))
        raw = params.get("logEvents") or []
        if not raw:
            raise invalid("1 validation error detected: Value '[]' at 'logEvents' failed to "
                          "satisfy constraint: Member must have length greater than or equal to 1")
        if len(raw) > MAX_BATCH_EVENTS:
            raise invalid("1 validation error detected: Value at 'logEvents' failed to satisfy "
                          "constraint: Member must have length less than or equal to 10000")
        events = [(int(e.get("timestamp", 0)), str(e.get("message", ""))) for e in raw]
        if any(b[0] < a[0] for a, b in itertools.pairwise(events)):
            raise invalid(
                "Log events in a single PutLogEvents request must be in chronological order.")
        if events[-1][0] - events[0][0] > DAY_MS:
            raise invalid("The batch of log events in a single PutLogEvents request cannot span "
                          "more than 24 hours.")
        size = sum(len(m.encode()) + EVENT_OVERHEAD for _, m in events)
        if size > MAX_BATCH_BYTES:
            raise invalid(f"Upload too large: {size} bytes exceeds limit of {MAX_BATCH_BYTES}")
        now = now_ms()
        rejected: dict[str, int] = {}
        too_new = [i for i, (ts, _) in enumerate(events) if ts > now + TOO_NEW_MS]
        too_old = [i for i, (ts, _) in enumerate(events) if ts < now - TOO_OLD_MS]
        if too_new:
            rejected["tooNewLogEventStartIndex"] = too_new[0]
        if too_old:
            rejected["tooOldLogEventEndIndex"] = too_old[-1]
        accepted = [
            (ts, m[:MAX_EVENT_BYTES]) for ts, m in events
            if now - TOO_OLD_MS <= ts <= now + TOO_NEW_MS
        ]
        store.put_events(group_id, stream_id, accepted)
        out: dict[str, Any] = {"nextSequenceToken": f"{now:056d}"}
        if rejected:
            out["rejectedLogEventsInfo"] = rejected
        return out

    async def get_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        scope = _scope(ctx)
        group_id = store.group_id(scope, _group_name(params))
        stream_id = store.stream_id(group_id, _required(params, "logStreamName"))
        limit = _limit(params, 10_000, 10_000)
        start = params.get("startTime")
        end = params.get("endTime")
        end = int(end) - 1 if end is not None else None  # endTime is exclusive here
        token = params.get("nextToken")
        after: tuple[int, int] | None = None
        before: tuple[int, int] | None = None
        if token:
            direction, key = _parse_key_token(str(token))
            if direction == "f":
                after = key
            else:
                before = key
        elif params.get("startFromHead"):
            after = (-(2**62), 0)
        events = store.stream_events(stream_id, start, end, after, before, limit)
        if events:
            first = (events[0].timestamp, events[0].id)
            last = (events[-1].timestamp, events[-1].id)
        else:
            first = last = after or before or (0, 0)
            if first[0] < 0:
                first = last = (0, 0)
        return {
            "events": [_event_out(e, False) for e in events],
            "nextForwardToken": _key_token("f", last),
            "nextBackwardToken": _key_token("b", first),
        }

    async def filter_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        scope = _scope(ctx)
        group_id = store.group_id(scope, _group_name(params))
        names = params.get("logStreamNames")
        prefix = str(params.get("logStreamNamePrefix") or "")
        if names and prefix:
            raise invalid("logStreamNames and logStreamNamePrefix are mutually exclusive.")
        streams = store.streams_named(group_id, names, prefix)
        stream_ids = [int(s["id"]) for s in streams] if (names or prefix) else None
        matcher = compile_pattern(params.get("filterPattern"))
        limit = _limit(params, 10_000, 10_000)
        after: tuple[int, int] | None = None
        if params.get("nextToken"):
            try:
                ts, eid = json.loads(base64.urlsafe_b64decode(str(params["nextToken"])))
                after = (int(ts), int(eid))
            except (ValueError, TypeError):
                raise invalid("The specified nextToken is invalid.") from None
        found: list[Event] = []
        scanned_to: tuple[int, int] | None = after
        exhausted = stream_ids == []
        while not exhausted and len(found) < limit:
            page = store.group_events(group_id, stream_ids, params.get("startTime"),
                                      params.get("endTime"), scanned_to, 1000)
            for event in page:
                scanned_to = (event.timestamp, event.id)
                if matcher(event.message):
                    found.append(event)
                    if len(found) >= limit:
                        break
            last = (page[-1].timestamp, page[-1].id) if page else None
            exhausted = (len(page) < 1000 and scanned_to == last) or not page
        out: dict[str, Any] = {
            "events": [_event_out(e, True) for e in found],
            "searchedLogStreams": [
                {"logStreamName": s["name"], "searchedCompletely": True} for s in streams
            ],
        }
        if not exhausted and scanned_to is not None:
            out["nextToken"] = base64.urlsafe_b64encode(json.dumps(list(scanned_to)).encode()
                                                        ).decode()
        return out

    return {
        "CreateLogGroup": create_log_group,
        "DeleteLogGroup": delete_log_group,
        "PutRetentionPolicy": put_retention_policy,
        "DeleteRetentionPolicy": delete_retention_policy,
        "DescribeLogGroups": describe_log_groups,
        "CreateLogStream": create_log_stream,
        "DeleteLogStream": delete_log_stream,
        "DescribeLogStreams": describe_log_streams,
        "PutLogEvents": put_log_events,
        "GetLogEvents": get_log_events,
        "FilterLogEvents": filter_log_events,
    }
