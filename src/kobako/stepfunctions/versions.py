"""State machine versions and aliases: immutable snapshots and weighted routes to them.

A version (`...:stateMachine:NAME:3`) freezes the definition and role of a
revision; an alias (`...:stateMachine:NAME:prod`) routes StartExecution to one or two
versions by weight. They are kept in their own tables (their own migration), and
the plain handlers of the service are wrapped so that CreateStateMachine /
UpdateStateMachine with `publish`, DescribeStateMachine on a version, StartExecution
on a version or alias and DescribeExecution's `stateMachineVersionArn` /
`stateMachineAliasArn` work as in AWS.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.server.service import Handler, RequestContext
from kobako.stepfunctions import arns
from kobako.stepfunctions.clock import Clock
from kobako.stepfunctions.executions import Executions
from kobako.stepfunctions.store import SfnStore
from kobako.store.db import Database, Row

SCHEMA = [
    """
    CREATE TABLE sfn_versions (
        arn TEXT PRIMARY KEY,
        machine_arn TEXT NOT NULL,
        version INTEGER NOT NULL,
        definition TEXT NOT NULL,
        role_arn TEXT NOT NULL,
        type TEXT NOT NULL,
        description TEXT,
        revision_id TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE sfn_version_counters (
        machine_arn TEXT PRIMARY KEY,
        last INTEGER NOT NULL
    );
    CREATE TABLE sfn_aliases (
        arn TEXT PRIMARY KEY,
        machine_arn TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT,
        routing TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE sfn_execution_targets (
        execution_arn TEXT PRIMARY KEY,
        version_arn TEXT,
        alias_arn TEXT
    )
    """
]


def _date(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def split(arn: str) -> tuple[str, str]:
    """(the unqualified state machine ARN, the qualifier: a version number, an alias
    name, or '')."""
    parts = arn.split(":")
    if len(parts) == 8 and parts[5] == "stateMachine":
        return ":".join(parts[:7]), parts[7]
    arns.parse(arn, "stateMachine")
    return arn, ""


def _not_found(arn: str) -> AwsError:
    return AwsError("ResourceNotFound", f"Resource not found: '{arn}'")


class VersionStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("stepfunctions.versions", SCHEMA)

    def version(self, arn: str) -> Row | None:
        return self.db.one("SELECT * FROM sfn_versions WHERE arn = ?", (arn,))

    def latest(self, machine_arn: str) -> Row | None:
        return self.db.one("SELECT * FROM sfn_versions WHERE machine_arn = ? ORDER BY "
                           "version DESC LIMIT 1", (machine_arn,))

    def publish(self, machine: Row, description: str | None, now: float) -> Row:
        with self.db.transaction():
            row = self.db.one("SELECT last FROM sfn_version_counters WHERE machine_arn = ?",
                              (machine["arn"],))
            number = int(row["last"]) + 1 if row else 1
            self.db.execute("INSERT INTO sfn_version_counters (machine_arn, last) VALUES "
                            "(?, ?) ON CONFLICT (machine_arn) DO UPDATE SET last = "
                            "excluded.last", (machine["arn"], number))
            arn = f"{machine['arn']}:{number}"
            self.db.execute(
                "INSERT INTO sfn_versions (arn, machine_arn, version, definition, role_arn, "
                "type, description, revision_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (arn, machine["arn"], number, machine["definition"], machine["role_arn"],
                 machine["type"], description, machine["revision_id"], now))
        found = self.version(arn)
        assert found is not None
        return found

    def versions(self, machine_arn: str) -> list[Row]:
        return self.db.query("SELECT * FROM sfn_versions WHERE machine_arn = ? ORDER BY "
                             "version DESC", (machine_arn,))

    def delete_version(self, arn: str) -> None:
        self.db.execute("DELETE FROM sfn_versions WHERE arn = ?", (arn,))

    def alias(self, arn: str) -> Row | None:
        return self.db.one("SELECT * FROM sfn_aliases WHERE arn = ?", (arn,))

    def aliases(self, machine_arn: str) -> list[Row]:
        return self.db.query("SELECT * FROM sfn_aliases WHERE machine_arn = ? ORDER BY name",
                             (machine_arn,))

    def put_alias(self, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        self.db.execute(f"INSERT OR REPLACE INTO sfn_aliases ({columns}) VALUES "
                        f"({', '.join('?' for _ in row)})", tuple(row.values()))

    def delete_alias(self, arn: str) -> None:
        self.db.execute("DELETE FROM sfn_aliases WHERE arn = ?", (arn,))

    def target(self, execution_arn: str) -> Row | None:
        return self.db.one("SELECT * FROM sfn_execution_targets WHERE execution_arn = ?",
                           (execution_arn,))

    def set_target(self, execution_arn: str, version: str | None, alias: str | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO sfn_execution_targets (execution_arn, "
                        "version_arn, alias_arn) VALUES (?, ?, ?)",
                        (execution_arn, version, alias))


class VersionsApi:
    def __init__(self, store: SfnStore, versions: VersionStore, runner: Executions,
                 clock: Clock, plain: dict[str, Handler]) -> None:
        self.store, self.versions, self.runner = store, versions, runner
        self.clock, self.plain = clock, plain

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreateStateMachine": self.create_machine,
            "UpdateStateMachine": self.update_machine,
            "DescribeStateMachine": self.describe_machine,
            "StartExecution": self.start_execution,
            "DescribeExecution": self.describe_execution,
            "PublishStateMachineVersion": self.publish,
            "ListStateMachineVersions": self.list_versions,
            "DeleteStateMachineVersion": self.delete_version,
            "CreateStateMachineAlias": self.create_alias,
            "DescribeStateMachineAlias": self.describe_alias,
            "ListStateMachineAliases": self.list_aliases,
            "UpdateStateMachineAlias": self.update_alias,
            "DeleteStateMachineAlias": self.delete_alias,
        }

    def _machine(self, arn: str) -> Row:
        row = self.store.machine(arn)
        if row is None:
            raise AwsError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        return row

    def _publish(self, machine: Row, description: str | None) -> Row:
        latest = self.versions.latest(str(machine["arn"]))
        if latest is not None and latest["revision_id"] == machine["revision_id"]:
            return latest  # nothing changed since: AWS returns the same version
        return self.versions.publish(machine, description, self.clock.now())

    # ------------------------------------------------------------ wrapped handlers

    async def create_machine(self, ctx: RequestContext,
                             params: dict[str, Any]) -> dict[str, Any]:
        if params.get("versionDescription") and not params.get("publish"):
            raise AwsError("ValidationException", "Version description can only be set "
                           "when publish is true")
        out = await self.plain["CreateStateMachine"](ctx, params)
        if params.get("publish"):
            machine = self._machine(out["stateMachineArn"])
            out["stateMachineVersionArn"] = self._publish(
                machine, params.get("versionDescription"))["arn"]
        return out

    async def update_machine(self, ctx: RequestContext,
                             params: dict[str, Any]) -> dict[str, Any]:
        if params.get("versionDescription") and not params.get("publish"):
            raise AwsError("ValidationException", "Version description can only be set "
                           "when publish is true")
        out = await self.plain["UpdateStateMachine"](ctx, params)
        if params.get("publish"):
            machine = self._machine(params["stateMachineArn"])
            out["stateMachineVersionArn"] = self._publish(
                machine, params.get("versionDescription"))["arn"]
        return out

    async def describe_machine(self, ctx: RequestContext,
                               params: dict[str, Any]) -> dict[str, Any]:
        arn = str(params.get("stateMachineArn") or "")
        base, qualifier = split(arn) if arn.count(":") == 7 else (arn, "")
        if not qualifier:
            return await self.plain["DescribeStateMachine"](ctx, params)
        version = self.versions.version(arn)
        if version is None:
            raise AwsError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        out: dict[str, Any] = await self.plain["DescribeStateMachine"](
            ctx, {"stateMachineArn": base}) if self.store.machine(base) is not None else {
                "name": arns.parse(base).name, "status": "ACTIVE",
                "loggingConfiguration": {"level": "OFF", "includeExecutionData": False},
                "tracingConfiguration": {"enabled": False}}
        out.update(stateMachineArn=arn, definition=version["definition"],
                   roleArn=version["role_arn"], type=version["type"],
                   creationDate=_date(version["created"]), revisionId=version["revision_id"])
        if version["description"]:
            out["description"] = version["description"]
        return out

    async def start_execution(self, ctx: RequestContext,
                              params: dict[str, Any]) -> dict[str, Any]:
        arn = str(params.get("stateMachineArn") or "")
        if arn.count(":") != 7:
            return await self.plain["StartExecution"](ctx, params)
        base, qualifier = split(arn)
        alias_arn: str | None = None
        if not qualifier.isdigit():
            alias = self.versions.alias(arn)
            if alias is None:
                raise _not_found(arn)
            alias_arn = arn
            routes = json.loads(alias["routing"])
            arn = random.choices([r["stateMachineVersionArn"] for r in routes],
                                 [r["weight"] for r in routes])[0]
        version = self.versions.version(arn)
        if version is None:
            raise AwsError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        machine = {"arn": base, "type": version["type"], "definition": version["definition"],
                   "role_arn": version["role_arn"]}
        row = self.runner.start(machine, params.get("name"), params.get("input"))
        self.versions.set_target(str(row["arn"]), arn, alias_arn)
        return {"executionArn": row["arn"], "startDate": _date(row["started"])}

    async def describe_execution(self, ctx: RequestContext,
                                 params: dict[str, Any]) -> dict[str, Any]:
        out = await self.plain["DescribeExecution"](ctx, params)
        target = self.versions.target(str(out["executionArn"]))
        if target is not None:
            if target["version_arn"]:
                out["stateMachineVersionArn"] = target["version_arn"]
            if target["alias_arn"]:
                out["stateMachineAliasArn"] = target["alias_arn"]
        return out

    # ------------------------------------------------------------ versions

    async def publish(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        machine = self._machine(str(params.get("stateMachineArn") or ""))
        wanted = params.get("revisionId")
        if wanted is not None and wanted != machine["revision_id"]:
            raise AwsError("ConflictException", f"Failed to publish the State Machine version "
                           f"for revision {wanted}. The current State Machine revision is "
                           f"{machine['revision_id']}.")
        version = self._publish(machine, params.get("description"))
        return {"stateMachineVersionArn": version["arn"],
                "creationDate": _date(version["created"])}

    async def list_versions(self, ctx: RequestContext,
                            params: dict[str, Any]) -> dict[str, Any]:
        machine = self._machine(str(params.get("stateMachineArn") or ""))
        rows = self.versions.versions(str(machine["arn"]))
        offset = int(params.get("nextToken") or 0)
        size = int(params.get("maxResults") or 100)
        out: dict[str, Any] = {"stateMachineVersions": [
            {"stateMachineVersionArn": r["arn"], "creationDate": _date(r["created"])}
            for r in rows[offset:offset + size]]}
        if offset + size < len(rows):
            out["nextToken"] = str(offset + size)
        return out

    async def delete_version(self, ctx: RequestContext,
                             params: dict[str, Any]) -> dict[str, Any]:
        arn = str(params.get("stateMachineVersionArn") or "")
        base, qualifier = split(arn)
        if not qualifier.isdigit():
            raise AwsError("ValidationException", f"Invalid version ARN: '{arn}'")
        for alias in self.versions.aliases(base):
            if any(r["stateMachineVersionArn"] == arn for r in json.loads(alias["routing"])):
                raise AwsError("ConflictException", f"Version to be deleted must not be "
                               f"referenced by an alias. Current list of aliases referencing "
                               f"this version: [{alias['name']}]")
        self.versions.delete_version(arn)
        return {}

    # ------------------------------------------------------------ aliases

    def _routing(self, routes: Any) -> tuple[str, str]:
        """Check a routingConfiguration; (the machine ARN, its JSON)."""
        if not isinstance(routes, list) or not 1 <= len(routes) <= 2:
            raise AwsError("ValidationException", "routingConfiguration must have one or two "
                           "entries")
        machines = set()
        for route in routes:
            arn = str(route.get("stateMachineVersionArn") or "")
            if self.versions.version(arn) is None:
                raise _not_found(arn)
            machines.add(split(arn)[0])
        if len(machines) != 1 or len({r["stateMachineVersionArn"] for r in routes}) != \
                len(routes):
            raise AwsError("ValidationException", "Routing configuration must contain "
                           "distinct versions of the same state machine")
        if sum(int(r.get("weight", 0)) for r in routes) != 100:
            raise AwsError("ValidationException", "Sum of routing configuration weights "
                           "must be equal to 100")
        return machines.pop(), json.dumps(
            [{"stateMachineVersionArn": r["stateMachineVersionArn"],
              "weight": int(r["weight"])} for r in routes])

    async def create_alias(self, ctx: RequestContext,
                           params: dict[str, Any]) -> dict[str, Any]:
        name = str(params.get("name") or "")
        arns.check_name(name)
        if name.isdigit():
            raise AwsError("ValidationException", "Alias name cannot be a number")
        machine_arn, routing = self._routing(params.get("routingConfiguration"))
        arn = f"{machine_arn}:{name}"
        existing = self.versions.alias(arn)
        if existing is not None:
            if existing["routing"] == routing and existing["description"] == \
                    params.get("description"):
                return {"stateMachineAliasArn": arn,
                        "creationDate": _date(existing["created"])}
            raise AwsError("ConflictException", f"Failed to create alias because an alias "
                           f"with the same name and a different routing configuration "
                           f"already exists: '{arn}'")
        now = self.clock.now()
        self.versions.put_alias({"arn": arn, "machine_arn": machine_arn, "name": name,
                                 "description": params.get("description"),
                                 "routing": routing, "created": now, "updated": now})
        return {"stateMachineAliasArn": arn, "creationDate": _date(now)}

    def _alias(self, arn: str) -> Row:
        row = self.versions.alias(arn)
        if row is None:
            raise _not_found(arn)
        return row

    async def describe_alias(self, ctx: RequestContext,
                             params: dict[str, Any]) -> dict[str, Any]:
        row = self._alias(str(params.get("stateMachineAliasArn") or ""))
        out = {"stateMachineAliasArn": row["arn"], "name": row["name"],
               "routingConfiguration": json.loads(row["routing"]),
               "creationDate": _date(row["created"]), "updateDate": _date(row["updated"])}
        if row["description"]:
            out["description"] = row["description"]
        return out

    async def list_aliases(self, ctx: RequestContext,
                           params: dict[str, Any]) -> dict[str, Any]:
        machine = self._machine(str(params.get("stateMachineArn") or ""))
        return {"stateMachineAliases": [
            {"stateMachineAliasArn": r["arn"], "creationDate": _date(r["created"])}
            for r in self.versions.aliases(str(machine["arn"]))]}

    async def update_alias(self, ctx: RequestContext,
                           params: dict[str, Any]) -> dict[str, Any]:
        row = dict(self._alias(str(params.get("stateMachineAliasArn") or "")))
        if params.get("routingConfiguration") is None and params.get("description") is None:
            raise AwsError("ValidationException", "Either the description or the "
                           "routingConfiguration must be specified")
        if params.get("routingConfiguration") is not None:
            machine_arn, row["routing"] = self._routing(params["routingConfiguration"])
            if machine_arn != row["machine_arn"]:
                raise AwsError("ValidationException", "The routing configuration must name "
                               "versions of the alias's state machine")
        if params.get("description") is not None:
            row["description"] = params["description"]
        row["updated"] = self.clock.now()
        self.versions.put_alias(row)
        return {"updateDate": _date(row["updated"])}

    async def delete_alias(self, ctx: RequestContext,
                           params: dict[str, Any]) -> dict[str, Any]:
        self.versions.delete_alias(str(params.get("stateMachineAliasArn") or ""))
        return {}
