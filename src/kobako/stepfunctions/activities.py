"""Activities and task-token callbacks: the API workers use to do a Task's work.

Activities are durable rows (their own migration, beside the machines'); the tasks
scheduled on them and the tokens workers answer with live in `TaskTokens`.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.server.service import Handler, RequestContext
from kobako.stepfunctions import arns
from kobako.stepfunctions.clock import Clock
from kobako.stepfunctions.tokens import TaskTokens
from kobako.store.db import Database, Row

SCHEMA = [
    """
    CREATE TABLE sfn_activities (
        arn TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        account_id TEXT NOT NULL,
        region TEXT NOT NULL,
        created REAL NOT NULL
    )
    """
]
POLL_SECONDS = 60.0  # GetActivityTask holds the request this long (AWS: 60 s)
MAX_OUTPUT = 256 * 1024


def activity_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:states:{region}:{account}:activity:{name}"


class ActivityStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("stepfunctions.activities", SCHEMA)

    def get(self, arn: str) -> Row | None:
        return self.db.one("SELECT * FROM sfn_activities WHERE arn = ?", (arn,))

    def put(self, arn: str, name: str, account: str, region: str, now: float) -> None:
        self.db.execute("INSERT INTO sfn_activities (arn, name, account_id, region, created) "
                        "VALUES (?, ?, ?, ?, ?)", (arn, name, account, region, now))

    def delete(self, arn: str) -> None:
        self.db.execute("DELETE FROM sfn_activities WHERE arn = ?", (arn,))

    def list(self, account: str, region: str, after: str, limit: int) -> list[Row]:
        return self.db.query("SELECT * FROM sfn_activities WHERE account_id = ? AND "
                             "region = ? AND name > ? ORDER BY name LIMIT ?",
                             (account, region, after, limit))


def _date(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _need(params: dict[str, Any], *names: str) -> None:
    for name in names:
        if params.get(name) is None:
            raise AwsError("ValidationException", f"1 validation error detected: Value null "
                           f"at '{name}' failed to satisfy constraint: Member must not be null")


def _check_text(params: dict[str, Any], name: str, limit: int) -> None:
    value = params.get(name)
    if value is not None and len(str(value)) > limit:
        raise AwsError("ValidationException", f"1 validation error detected: Value at "
                       f"'{name}' failed to satisfy constraint: Member must have length less "
                       f"than or equal to {limit}")


class ActivitiesApi:
    def __init__(self, store: ActivityStore, tokens: TaskTokens, clock: Clock) -> None:
        self.store, self.tokens, self.clock = store, tokens, clock

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreateActivity": self.create, "DescribeActivity": self.describe,
            "ListActivities": self.list, "DeleteActivity": self.delete,
            "GetActivityTask": self.get_task, "SendTaskSuccess": self.success,
            "SendTaskFailure": self.failure, "SendTaskHeartbeat": self.heartbeat,
        }

    def _activity(self, arn: str) -> Row:
        arns.parse(arn, "activity")
        row = self.store.get(arn)
        if row is None:
            raise AwsError("ActivityDoesNotExist", f"Activity Does Not Exist: '{arn}'")
        return row

    async def create(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _need(params, "name")
        name = str(params["name"])
        arns.check_name(name)
        arn = activity_arn(ctx.region, ctx.account_id, name)
        row = self.store.get(arn)
        if row is None:
            self.store.put(arn, name, ctx.account_id, ctx.region, self.clock.now())
            row = self.store.get(arn)
            assert row is not None
        return {"activityArn": arn, "creationDate": _date(row["created"])}

    async def describe(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _need(params, "activityArn")
        row = self._activity(str(params["activityArn"]))
        return {"activityArn": row["arn"], "name": row["name"],
                "creationDate": _date(row["created"])}

    async def list(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        size = int(params.get("maxResults") or 100)
        token = params.get("nextToken")
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else ""
        rows = self.store.list(ctx.account_id, ctx.region, after, size + 1)
        out: dict[str, Any] = {"activities": [
            {"activityArn": r["arn"], "name": r["name"], "creationDate": _date(r["created"])}
            for r in rows[:size]]}
        if len(rows) > size:
            out["nextToken"] = base64.urlsafe_b64encode(
                str(rows[size - 1]["name"]).encode()).decode()
        return out

    async def delete(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _need(params, "activityArn")
        arn = str(params["activityArn"])
        arns.parse(arn, "activity")
        self.store.delete(arn)
        return {}

    async def get_task(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _need(params, "activityArn")
        _check_text(params, "workerName", 80)
        row = self._activity(str(params["activityArn"]))
        found = await self.tokens.poll(str(row["arn"]), params.get("workerName"),
                                       POLL_SECONDS)
        if found is None:
            return {}
        return {"taskToken": found[0], "input": found[1]}

    async def success(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _need(params, "taskToken", "output")
        _check_text(params, "output", MAX_OUTPUT)
        self.tokens.succeed(str(params["taskToken"]), str(params["output"]))
        return {}

    async def failure(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _need(params, "taskToken")
        _check_text(params, "error", 256)
        _check_text(params, "cause", 32768)
        self.tokens.fail(str(params["taskToken"]), params.get("error"), params.get("cause"))
        return {}

    async def heartbeat(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _need(params, "taskToken")
        self.tokens.heartbeat(str(params["taskToken"]))
        return {}
