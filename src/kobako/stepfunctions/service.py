"""The Step Functions API: thin handlers over the store and the execution runner."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kobako.config import Config
from kobako.protocol.codecs import JsonCodec
from kobako.protocol.errors import AwsError
from kobako.server.service import Handler, RequestContext, Service
from kobako.spec import service_model
from kobako.stepfunctions import arns, definition
from kobako.stepfunctions.activities import ActivitiesApi, ActivityStore
from kobako.stepfunctions.clock import Clock, SystemClock
from kobako.stepfunctions.engine import dumps
from kobako.stepfunctions.executions import Executions, describe
from kobako.stepfunctions.express import ExpressApi
from kobako.stepfunctions.integrations import INTEGRATIONS, Integrations
from kobako.stepfunctions.map_run import MapRuns
from kobako.stepfunctions.map_run_api import MapRunsApi
from kobako.stepfunctions.map_run_store import MapRunStore
from kobako.stepfunctions.store import SfnStore
from kobako.stepfunctions.versions import VersionsApi, VersionStore
from kobako.store.db import Database, Row

MAX_TAGS = 50


def _date(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _untoken(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        text = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise AwsError("InvalidToken", f"Invalid Token: '{token}'") from None
    if not text:
        raise AwsError("InvalidToken", f"Invalid Token: '{token}'")
    return text


def _page_size(params: dict[str, Any]) -> int:
    size = params.get("maxResults") or 100
    if not 0 <= size <= 1000:
        raise AwsError("ValidationException", "1 validation error detected: Value at "
                       "'maxResults' failed to satisfy constraint: Member must have value "
                       "less than or equal to 1000")
    return int(size)


def _required(params: dict[str, Any], *names: str) -> None:
    for name in names:
        if params.get(name) is None:
            raise AwsError("ValidationException", f"1 validation error detected: Value null "
                           f"at '{name}' failed to satisfy constraint: Member must not be null")


def _check_definition(text: str) -> None:
    try:
        definition.parse(text)
    except definition.InvalidDefinition as exc:
        raise AwsError("InvalidDefinition", str(exc)) from None


def _tags(raw: list[dict[str, Any]] | None) -> dict[str, str]:
    tags = {str(t.get("key", "")): str(t.get("value", "")) for t in raw or []}
    if len(tags) > MAX_TAGS:
        raise AwsError("TooManyTags", f"Too many tags: at most {MAX_TAGS} are allowed.")
    return tags


class StepFunctionsApi:
    def __init__(self, store: SfnStore, runner: Executions, clock: Clock) -> None:
        self.store = store
        self.runner = runner
        self.clock = clock

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreateStateMachine": self.create_state_machine,
            "DescribeStateMachine": self.describe_state_machine,
            "ListStateMachines": self.list_state_machines,
            "UpdateStateMachine": self.update_state_machine,
            "DeleteStateMachine": self.delete_state_machine,
            "StartExecution": self.start_execution,
            "DescribeExecution": self.describe_execution,
            "ListExecutions": self.list_executions,
            "GetExecutionHistory": self.get_execution_history,
            "StopExecution": self.stop_execution,
            "RedriveExecution": self.redrive_execution,
            "DescribeStateMachineForExecution": self.describe_machine_for_execution,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    def _machine(self, arn: str) -> Row:
        arns.parse(arn, "stateMachine")
        row = self.store.machine(arn)
        if row is None:
            raise AwsError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        return row

    def _execution(self, arn: str) -> Row:
        arns.parse(arn, "execution")
        row = self.store.execution(arn)
        if row is None:
            raise AwsError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return row

    # ---------------------------------------------------------------- state machines

    async def create_state_machine(self, ctx: RequestContext,
                                   params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "name", "definition", "roleArn")
        name = str(params["name"])
        arns.check_name(name)
        _check_definition(params["definition"])
        kind = params.get("type") or "STANDARD"
        if kind not in ("STANDARD", "EXPRESS"):
            raise AwsError("ValidationException", f"Value '{kind}' at 'type' failed to satisfy "
                           "constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]")
        arn = arns.machine_arn(ctx.region, ctx.account_id, name)
        options = {k: params[k] for k in ("loggingConfiguration", "tracingConfiguration")
                   if k in params}
        existing = self.store.machine(arn)
        if existing is not None:
            same = (existing["definition"] == params["definition"]
                    and existing["role_arn"] == params["roleArn"] and existing["type"] == kind)
            if not same:
                raise AwsError("StateMachineAlreadyExists",
                               f"State Machine Already Exists: '{arn}'")
            return {"stateMachineArn": arn, "creationDate": _date(existing["created"])}
        tags = _tags(params.get("tags"))
        now = self.clock.now()
        self.store.put_machine({
            "arn": arn, "name": name, "account_id": ctx.account_id, "region": ctx.region,
            "definition": params["definition"], "role_arn": params["roleArn"], "type": kind,
            "created": now, "updated": now, "revision_id": str(uuid.uuid4()),
            "options": json.dumps(options),
        })
        if tags:
            self.store.tag(arn, tags)
        return {"stateMachineArn": arn, "creationDate": _date(now)}

    def _machine_view(self, row: Row) -> dict[str, Any]:
        options = json.loads(row["options"])
        return {
            "stateMachineArn": row["arn"], "name": row["name"], "status": "ACTIVE",
            "definition": row["definition"], "roleArn": row["role_arn"], "type": row["type"],
            "creationDate": _date(row["created"]),
            "loggingConfiguration": options.get("loggingConfiguration",
                                                {"level": "OFF", "includeExecutionData": False}),
            "tracingConfiguration": options.get("tracingConfiguration", {"enabled": False}),
            "revisionId": row["revision_id"],
        }

    async def describe_state_machine(self, ctx: RequestContext,
                                     params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "stateMachineArn")
        return self._machine_view(self._machine(params["stateMachineArn"]))

    async def list_state_machines(self, ctx: RequestContext,
                                  params: dict[str, Any]) -> dict[str, Any]:
        size = _page_size(params)
        after = _untoken(params.get("nextToken")) or ""
        rows = self.store.machines(ctx.account_id, ctx.region, after, size + 1)
        out: dict[str, Any] = {"stateMachines": [
            {"stateMachineArn": r["arn"], "name": r["name"], "type": r["type"],
             "creationDate": _date(r["created"])} for r in rows[:size]]}
        if len(rows) > size:
            out["nextToken"] = _token(str(rows[size - 1]["name"]))
        return out

    async def update_state_machine(self, ctx: RequestContext,
                                   params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "stateMachineArn")
        row = self._machine(params["stateMachineArn"])
        changes: dict[str, Any] = {}
        if params.get("definition") is not None:
            _check_definition(params["definition"])
            changes["definition"] = params["definition"]
        if params.get("roleArn") is not None:
            changes["role_arn"] = params["roleArn"]
        options = json.loads(row["options"])
        for key in ("loggingConfiguration", "tracingConfiguration"):
            if key in params:
                options[key] = params[key]
                changes["options"] = json.dumps(options)
        if not changes:
            raise AwsError("MissingRequiredParameter", "Either the definition, the roleArn, "
                           "the loggingConfiguration or the tracingConfiguration must be "
                           "specified")
        now = self.clock.now()
        changes.update(updated=now, revision_id=str(uuid.uuid4()))
        self.store.update_machine(row["arn"], changes)
        return {"updateDate": _date(now), "revisionId": changes["revision_id"]}

    async def delete_state_machine(self, ctx: RequestContext,
                                   params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "stateMachineArn")
        arn = params["stateMachineArn"]
        arns.parse(arn, "stateMachine")
        self.store.delete_machine(arn)
        return {}

    # ---------------------------------------------------------------- executions

    async def start_execution(self, ctx: RequestContext,
                              params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "stateMachineArn")
        machine = self._machine(params["stateMachineArn"])
        row = self.runner.start(machine, params.get("name"), params.get("input"))
        return {"executionArn": row["arn"], "startDate": _date(row["started"])}

    async def describe_execution(self, ctx: RequestContext,
                                 params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "executionArn")
        return describe(self._execution(params["executionArn"]))

    async def describe_machine_for_execution(self, ctx: RequestContext,
                                             params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "executionArn")
        row = self._execution(params["executionArn"])
        machine = self.store.machine(row["machine_arn"])
        name = arns.parse(row["machine_arn"]).name
        options = json.loads(machine["options"]) if machine else {}
        return {
            "stateMachineArn": row["machine_arn"], "name": name,
            "definition": row["definition"], "roleArn": row["role_arn"],
            "updateDate": _date(machine["updated"] if machine else row["started"]),
            "loggingConfiguration": options.get("loggingConfiguration",
                                                {"level": "OFF", "includeExecutionData": False}),
            "tracingConfiguration": options.get("tracingConfiguration", {"enabled": False}),
        }

    async def list_executions(self, ctx: RequestContext,
                              params: dict[str, Any]) -> dict[str, Any]:
        map_run = params.get("mapRunArn")
        if (params.get("stateMachineArn") is None) == (map_run is None):
            raise AwsError("ValidationException",
                           "Must provide a StateMachine ARN or MapRun ARN")
        if map_run is not None:
            arns.parse(map_run, "mapRun")
            machine_arn = map_run
        else:
            machine_arn = params["stateMachineArn"]
            self._machine(machine_arn)
        status = params.get("statusFilter")
        if status is not None and status not in (
                "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"):
            raise AwsError("ValidationException", f"Value '{status}' at 'statusFilter' failed "
                           "to satisfy constraint: Member must satisfy enum value set")
        size = _page_size(params)
        offset_text = _untoken(params.get("nextToken")) or "0"
        if not offset_text.isdigit():
            raise AwsError("InvalidToken", "Invalid Token: the token is not valid")
        offset = int(offset_text)
        rows = self.store.executions(machine_arn, status, offset, size + 1,
                                     map_run=map_run is not None)
        items = []
        for r in rows[:size]:
            item: dict[str, Any] = {
                "executionArn": r["arn"], "stateMachineArn": r["machine_arn"],
                "name": r["name"], "status": r["status"], "startDate": _date(r["started"])}
            if r["stopped"] is not None:
                item["stopDate"] = _date(r["stopped"])
            if r["map_run_arn"] is not None:
                item["mapRunArn"] = r["map_run_arn"]
            items.append(item)
        out: dict[str, Any] = {"executions": items}
        if len(rows) > size:
            out["nextToken"] = _token(str(offset + size))
        return out

    async def get_execution_history(self, ctx: RequestContext,
                                    params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "executionArn")
        row = self._execution(params["executionArn"])
        events = self.store.events(row["arn"])
        if params.get("reverseOrder"):
            events.reverse()
        size = _page_size(params)
        offset_text = _untoken(params.get("nextToken")) or "0"
        if not offset_text.isdigit():
            raise AwsError("InvalidToken", "Invalid Token: the token is not valid")
        offset = int(offset_text)
        include = params.get("includeExecutionData", True) is not False
        page = events[offset: offset + size]
        out: dict[str, Any] = {"events": [
            {"timestamp": _date(e.timestamp), "type": e.type, "id": e.id,
             "previousEventId": e.previous_id,
             **({_details_key(e.type): _strip(e.details, include)} if e.details else {})}
            for e in page]}
        if offset + size < len(events):
            out["nextToken"] = _token(str(offset + size))
        return out

    async def stop_execution(self, ctx: RequestContext,
                             params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "executionArn")
        row = self._execution(params["executionArn"])
        if row["status"] == "RUNNING":
            self.runner.stop(row["arn"], params.get("error"), params.get("cause"))
            row = self._execution(row["arn"])
        return {"stopDate": _date(row["stopped"] or self.clock.now())}

    async def redrive_execution(self, ctx: RequestContext,
                                params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "executionArn")
        row = self.runner.redrive(str(self._execution(params["executionArn"])["arn"]))
        return {"redriveDate": _date(row["redrived"])}

    # ---------------------------------------------------------------- tags

    def _tagged(self, arn: str) -> str:
        parsed = arns.parse(arn)
        if parsed.kind != "stateMachine" or self.store.machine(arn) is None:
            raise AwsError("ResourceNotFound", f"Resource not found: '{arn}'")
        return arn

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "resourceArn", "tags")
        arn = self._tagged(params["resourceArn"])
        tags = _tags(params["tags"])
        current = {r["key"] for r in self.store.tags(arn)}
        if len(current | set(tags)) > MAX_TAGS:
            raise AwsError("TooManyTags", f"Too many tags: at most {MAX_TAGS} are allowed.")
        self.store.tag(arn, tags)
        return {}

    async def untag_resource(self, ctx: RequestContext,
                             params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "resourceArn", "tagKeys")
        self.store.untag(self._tagged(params["resourceArn"]), list(params["tagKeys"]))
        return {}

    async def list_tags_for_resource(self, ctx: RequestContext,
                                     params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "resourceArn")
        rows = self.store.tags(self._tagged(params["resourceArn"]))
        return {"tags": [{"key": r["key"], "value": r["value"]} for r in rows]}


_DETAIL_KEYS = {
    "MapIterationStarted": "mapIterationStartedEventDetails",
    "MapIterationSucceeded": "mapIterationSucceededEventDetails",
    "MapIterationFailed": "mapIterationFailedEventDetails",
    "MapIterationAborted": "mapIterationAbortedEventDetails",
    "MapStateStarted": "mapStateStartedEventDetails",
}


def _details_key(event_type: str) -> str:
    """The HistoryEvent member that carries an event type's details."""
    if event_type in _DETAIL_KEYS:
        return _DETAIL_KEYS[event_type]
    if event_type.endswith("StateEntered"):
        return "stateEnteredEventDetails"
    if event_type.endswith("StateExited"):
        return "stateExitedEventDetails"
    return event_type[0].lower() + event_type[1:] + "EventDetails"


def _strip(details: dict[str, Any], include: bool) -> dict[str, Any]:
    if include:
        return details
    return {k: v for k, v in details.items() if k not in ("input", "output")}


@dataclass
class StepFunctionsService(Service):
    """The service plus this app's Task registry, which `connect` fills from its peers."""

    integrations: Integrations = field(default_factory=Integrations)
    map_runs: MapRuns | None = None  # `connect` gives it kobako's S3


def build(config: Config, db: Database, clock: Clock | None = None) -> StepFunctionsService:
    clock = clock or SystemClock()
    store = SfnStore(db)
    activities = ActivityStore(db)
    runner = Executions(store, clock, INTEGRATIONS,
                        activity_exists=lambda arn: activities.get(arn) is not None)
    map_runs = MapRuns(MapRunStore(db), runner, clock)
    runner.map_runs = map_runs
    api = StepFunctionsApi(store, runner, clock)
    handlers = api.handlers()
    handlers.update(MapRunsApi(map_runs, store).handlers())
    handlers.update(ActivitiesApi(activities, runner.tokens, clock).handlers())
    handlers.update(ExpressApi(store, runner, clock).handlers())
    handlers.update(VersionsApi(store, VersionStore(db), runner, clock,
                                dict(handlers)).handlers())
    return StepFunctionsService(
        name="stepfunctions",
        codec=JsonCodec(service_model("stepfunctions")),
        handlers=handlers,
        signing_names=("states",),
        startup=[runner.resume_all],
        shutdown=[runner.stop_all],
        integrations=runner.integrations,
        map_runs=map_runs,
    )


__all__ = ["StepFunctionsService", "build", "dumps"]
