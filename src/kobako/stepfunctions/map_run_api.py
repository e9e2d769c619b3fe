"""DescribeMapRun, ListMapRuns and UpdateMapRun over the stored Map Runs.

A running Map Run's counts and limits are its live ones (`MapRuns.live`), so
UpdateMapRun takes effect on the run at once and DescribeMapRun shows progress.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.server.service import Handler, RequestContext
from kobako.stepfunctions import arns
from kobako.stepfunctions.map_run import MapRuns
from kobako.stepfunctions.store import SfnStore
from kobako.store.db import Row


def _date(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class MapRunsApi:
    def __init__(self, runs: MapRuns, store: SfnStore) -> None:
        self.runs = runs
        self.store = store

    def handlers(self) -> dict[str, Handler]:
        return {"DescribeMapRun": self.describe, "ListMapRuns": self.list,
                "UpdateMapRun": self.update}

    def _row(self, arn: Any) -> Row:
        if not isinstance(arn, str):
            raise AwsError("ValidationException", "1 validation error detected: Value null "
                           "at 'mapRunArn' failed to satisfy constraint: Member must not "
                           "be null")
        arns.parse(arn, "mapRun")
        row = self.runs.store.get(arn)
        if row is None:
            raise AwsError("ResourceNotFound", f"Resource not found: '{arn}'")
        return row

    async def describe(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        row = self._row(params.get("mapRunArn"))
        live = self.runs.live.get(str(row["arn"]))
        out: dict[str, Any] = {
            "mapRunArn": row["arn"], "executionArn": row["execution_arn"],
            "status": row["status"], "startDate": _date(row["started"]),
            "maxConcurrency": live.max_concurrency if live else row["max_concurrency"],
            "toleratedFailurePercentage": float(
                (live.tolerated_pct if live else row["tolerated_pct"]) or 0.0),
            "toleratedFailureCount": int(
                (live.tolerated_count if live else row["tolerated_count"]) or 0),
            "itemCounts": live.items if live else json.loads(row["item_counts"]),
            "executionCounts": live.executions if live else json.loads(
                row["execution_counts"]),
            "redriveCount": int(row["redrive_count"]),
        }
        if row["stopped"] is not None:
            out["stopDate"] = _date(row["stopped"])
        if row["redrived"] is not None:
            out["redriveDate"] = _date(row["redrived"])
        return out

    async def list(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("executionArn")
        if not isinstance(arn, str):
            raise AwsError("ValidationException", "1 validation error detected: Value null "
                           "at 'executionArn' failed to satisfy constraint: Member must not "
                           "be null")
        arns.parse(arn, "execution")
        if self.store.execution(arn) is None:
            raise AwsError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        size = int(params.get("maxResults") or 100)
        offset = 0
        if params.get("nextToken"):
            try:
                offset = int(base64.urlsafe_b64decode(str(params["nextToken"])).decode())
            except (ValueError, UnicodeDecodeError):
                raise AwsError("InvalidToken", "Invalid Token: the token is not valid") \
                    from None
        rows = self.runs.store.of_execution(arn, offset, size + 1)
        items = []
        for row in rows[:size]:
            item = {"executionArn": row["execution_arn"], "mapRunArn": row["arn"],
                    "stateMachineArn": row["machine_arn"], "startDate": _date(row["started"])}
            if row["stopped"] is not None:
                item["stopDate"] = _date(row["stopped"])
            items.append(item)
        out: dict[str, Any] = {"mapRuns": items}
        if len(rows) > size:
            out["nextToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return out

    async def update(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        row = self._row(params.get("mapRunArn"))
        changes: dict[str, Any] = {}
        concurrency = params.get("maxConcurrency")
        count = params.get("toleratedFailureCount")
        pct = params.get("toleratedFailurePercentage")
        if concurrency is None and count is None and pct is None:
            raise AwsError("ValidationException", "At least one of the parameters "
                           "maxConcurrency, toleratedFailurePercentage or "
                           "toleratedFailureCount must be provided.")
        if concurrency is not None:
            if int(concurrency) < 0:
                raise AwsError("ValidationException", "maxConcurrency must be >= 0")
            changes["max_concurrency"] = int(concurrency)
        if count is not None:
            if int(count) < 0:
                raise AwsError("ValidationException", "toleratedFailureCount must be >= 0")
            changes["tolerated_count"] = int(count)
        if pct is not None:
            if not 0 <= float(pct) <= 100:
                raise AwsError("ValidationException", "toleratedFailurePercentage must be "
                               "between 0 and 100")
            changes["tolerated_pct"] = float(pct)
        if row["status"] != "RUNNING":
            raise AwsError("ValidationException", f"Map Run is {row['status']} and cannot be "
                           "updated.")
        self.runs.store.update(str(row["arn"]), **changes)
        live = self.runs.live.get(str(row["arn"]))
        if live is not None:
            live.max_concurrency = changes.get("max_concurrency", live.max_concurrency)
            live.tolerated_count = changes.get("tolerated_count", live.tolerated_count)
            live.tolerated_pct = changes.get("tolerated_pct", live.tolerated_pct)
            live.changed.set()
        return {}
