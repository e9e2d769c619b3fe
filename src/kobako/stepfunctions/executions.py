"""Executions as asyncio tasks in the server process: start, stop, finish, resume.

Each RUNNING execution is one task driving the interpreter over its stored cursor;
at startup every RUNNING execution found in the store gets its task back. This is
also where `arn:aws:states:::states:startExecution(.sync|.sync:2)` is served, since
a child execution is just another execution here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.stepfunctions import arns, errors
from kobako.stepfunctions.clock import Clock
from kobako.stepfunctions.engine import (
    Cursor,
    DistributedMap,
    FailState,
    Frame,
    Interpreter,
    dumps,
    iso,
)
from kobako.stepfunctions.errors import StatesError
from kobako.stepfunctions.integrations import Integrations, TaskCall
from kobako.stepfunctions.store import NotRunning, PendingEvent, SfnStore
from kobako.stepfunctions.tokens import TaskTokens
from kobako.store.db import Row

log = logging.getLogger("kobako.stepfunctions")


class _Recorder:
    """Writes a run's events; a state's Exited event waits for the next state's Entered
    event so both commit in one transaction (a crash in between loses neither cursor
    nor work: the stored cursor still points at the state that was exiting)."""

    resolves_entered = True  # SfnStore.append fills in the Entered event's id

    def __init__(self, store: SfnStore, arn: str, clock: Clock, last: int) -> None:
        self.store, self.arn, self.clock = store, arn, clock
        self.last = last  # the id of the last event recorded (or held)
        self.held: list[PendingEvent] = []

    def event(self, type: str, details: dict[str, Any] | None, previous: int,
              cursor: Cursor | None = None) -> int:
        item: PendingEvent = (type, details, previous, self.clock.now(), cursor)
        if cursor is not None and not self.held and type.endswith("StateExited"):
            self.held.append(item)
            self.last += 1
            return self.last
        batch, self.held = [*self.held, item], []
        self.last = self.store.append_batch(self.arn, batch)[-1]
        return self.last

    def flush(self) -> None:
        if self.held:
            batch, self.held = self.held, []
            self.last = self.store.append_batch(self.arn, batch)[-1]

    def checkpoint(self, cursor: Cursor) -> None:
        self.flush()
        self.store.checkpoint(self.arn, cursor)


def describe(row: Row, parse_data: bool = False) -> dict[str, Any]:
    """An execution as DescribeExecution (or a .sync integration) reports it."""
    out: dict[str, Any] = {
        "executionArn": row["arn"], "stateMachineArn": row["machine_arn"],
        "name": row["name"], "status": row["status"],
        "startDate": datetime.fromtimestamp(row["started"], UTC),
        "input": row["input"], "inputDetails": {"included": True},
    }
    if row["stopped"] is not None:
        out["stopDate"] = datetime.fromtimestamp(row["stopped"], UTC)
    if row["output"] is not None:
        out["output"] = row["output"]
        out["outputDetails"] = {"included": True}
    if row["error"] is not None:
        out["error"] = row["error"]
    if row["cause"] is not None:
        out["cause"] = row["cause"]
    if row["map_run_arn"] is not None:
        out["mapRunArn"] = row["map_run_arn"]
    out["redriveCount"] = row["redrive_count"]
    if row["redrived"] is not None:
        out["redriveDate"] = datetime.fromtimestamp(row["redrived"], UTC)
    if row["status"] in ("FAILED", "TIMED_OUT", "ABORTED") and row["type"] == "STANDARD" \
            and row["cursor"]:
        # A Map Run's child is redriven by redriving the Map Run's parent.
        out["redriveStatus"] = "REDRIVABLE_BY_MAP_RUN" if row["map_run_arn"] else \
            "REDRIVABLE"
    else:
        out["redriveStatus"] = "NOT_REDRIVABLE"
        out["redriveStatusReason"] = "Execution is RUNNING and cannot be redriven" \
            if row["status"] == "RUNNING" else f"Execution is {row['status']} and cannot " \
            "be redriven"
    return out


class Executions:
    def __init__(self, store: SfnStore, clock: Clock, integrations: Integrations,
                 activity_exists: Callable[[str], bool] = lambda arn: False) -> None:
        self.store = store
        self.clock = clock
        self.tokens = TaskTokens(clock)
        self.activity_exists = activity_exists
        self.integrations = Integrations(parent=integrations)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.map_runs: DistributedMap | None = None  # set by the service (map_run)
        self.done: dict[str, asyncio.Event] = {}
        for suffix, mode in (("", "start"), (".sync", "sync"), (".sync:2", "sync2")):
            self.integrations.register(
                f"arn:aws:states:::states:startExecution{suffix}", self._integration(mode))

    # ---------------------------------------------------------------- lifecycle

    async def resume_all(self) -> None:
        """Startup hook: give every RUNNING execution its task back."""
        for row in self.store.running():
            self._launch(str(row["arn"]))

    async def stop_all(self) -> None:
        """Shutdown hook: cancel the tasks; the executions stay RUNNING and resume."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def start(self, machine: Row | dict[str, Any], name: str | None,
              input_text: str | None, map_run: str | None = None) -> Row:
        """Start (or, for the same name and input while running, return) an execution."""
        name = name if name is not None else str(uuid.uuid4())
        arns.check_name(name)
        text = "{}" if input_text is None else input_text
        if len(text.encode()) > errors.PAYLOAD_LIMIT:
            raise AwsError("ValidationException", "1 validation error detected: Value at "
                           "'input' failed to satisfy constraint: Member must have length "
                           "less than or equal to 262144")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AwsError("InvalidExecutionInput",
                           f"Invalid State Machine Execution Input: '{exc}'") from None
        arn = arns.execution_arn(str(machine["arn"]), name)
        existing = self.store.execution(arn)
        if existing is not None:
            if existing["status"] == "RUNNING" and existing["input"] == text:
                return existing
            raise AwsError("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
        now = self.clock.now()
        row = {
            "arn": arn, "machine_arn": machine["arn"], "name": name, "status": "RUNNING",
            "type": machine["type"], "definition": machine["definition"],
            "role_arn": machine["role_arn"], "input": text, "started": now,
        }
        if map_run is not None:
            row["map_run_arn"] = map_run
        self.store.create_execution(row, {
            "input": text, "inputDetails": {"truncated": False},
            "roleArn": machine["role_arn"],
        })
        del data
        self._launch(arn)
        created = self.store.execution(arn)
        assert created is not None
        return created

    def stop(self, arn: str, error: str | None, cause: str | None) -> None:
        details = {k: v for k, v in (("error", error), ("cause", cause)) if v is not None}
        self.store.finish(arn, "ABORTED", "ExecutionAborted", details, self.clock.now(),
                          error=error, cause=cause)
        task = self.tasks.get(arn)
        if task is not None:
            task.cancel()
        self._mark_done(arn)

    def redrive(self, arn: str) -> Row:
        """RedriveExecution: run again from the state where the execution stopped."""
        row = self.store.execution(arn)
        assert row is not None
        if row["type"] != "STANDARD" or row["status"] not in ("FAILED", "TIMED_OUT",
                                                              "ABORTED"):
            raise AwsError("ExecutionNotRedrivable", f"Execution is {row['status']} and "
                           f"cannot be redriven: '{arn}'")
        if not row["cursor"] or self.clock.now() - float(row["stopped"]) > 14 * 86400:
            raise AwsError("ExecutionNotRedrivable", f"Execution cannot be redriven: '{arn}'")
        stopped = Cursor.from_json(row["cursor"])
        # The state that failed runs again, with a new *StateEntered event (a
        # distributed Map redrives its Map Run: see map_run).
        cursor = Cursor(stopped.state, stopped.input, variables=stopped.variables,
                        redriven=True)
        if self.store.redrive(arn, cursor, self.clock.now()) is None:
            raise AwsError("ExecutionNotRedrivable", f"Execution cannot be redriven: '{arn}'")
        self.tasks.pop(arn, None)
        self._launch(arn)
        found = self.store.execution(arn)
        assert found is not None
        return found

    async def wait(self, arn: str) -> Row:
        """Until the execution is no longer RUNNING; its row."""
        while True:
            row = self.store.execution(arn)
            if row is None or row["status"] != "RUNNING":
                assert row is not None
                return row
            event = self.done.setdefault(arn, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=1.0)

    # ---------------------------------------------------------------- running

    def _launch(self, arn: str) -> None:
        self.done.setdefault(arn, asyncio.Event())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet (tests building a service): resume_all starts it
        if arn not in self.tasks:
            self.tasks[arn] = loop.create_task(self._run(arn), name=f"sfn:{arn}")

    def _mark_done(self, arn: str) -> None:
        event = self.done.pop(arn, None)
        if event is not None:
            event.set()

    async def _run(self, arn: str) -> None:
        try:
            await self._drive(arn)
        except NotRunning:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an interpreter bug must not leave it RUNNING forever
            log.exception("execution %s crashed", arn)
            self._close(arn, "FAILED", "ExecutionFailed", errors.RUNTIME,
                        f"Internal error in kobako: {exc!r}")
        finally:
            self.tasks.pop(arn, None)
            row = self.store.execution(arn)
            if row is None or row["status"] != "RUNNING":
                self._mark_done(arn)

    async def _drive(self, arn: str) -> None:
        row = self.store.execution(arn)
        if row is None or row["status"] != "RUNNING":
            return
        machine = json.loads(row["definition"])
        cursor = Cursor.from_json(row["cursor"]) if row["cursor"] else \
            Cursor(str(machine["StartAt"]), json.loads(row["input"]))
        parsed = arns.parse(arn)
        context = {
            "Execution": {"Id": arn, "Input": json.loads(row["input"]), "Name": row["name"],
                          "RoleArn": row["role_arn"], "StartTime": iso(row["started"]),
                          "RedriveCount": int(row["redrive_count"])},
            "StateMachine": {"Id": row["machine_arn"], "Name": parsed.name},
        }
        frame = Frame(context, int(row["last_event"]), durable=True)
        recorder = _Recorder(self.store, arn, self.clock, int(row["last_event"]))
        interpreter = Interpreter(recorder, self.clock,
                                  self.integrations, arn, parsed.region, parsed.account,
                                  tokens=self.tokens, activity_exists=self.activity_exists,
                                  map_runs=self.map_runs)
        work = asyncio.ensure_future(interpreter.run(machine, cursor, frame))
        limit = machine.get("TimeoutSeconds")
        timer = asyncio.ensure_future(
            self.clock.sleep(float(row["redrived"] or row["started"]) + limit
                             - self.clock.now())
            if isinstance(limit, int) else asyncio.Event().wait())
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            timer.cancel()
            await asyncio.gather(work, timer, return_exceptions=True)
            raise
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            # AWS reports a machine's TimeoutSeconds with no error or cause at all.
            self.store.finish(arn, "TIMED_OUT", "ExecutionTimedOut", None, self.clock.now())
            return
        timer.cancel()
        with contextlib.suppress(StatesError):
            recorder.flush()
        try:
            output = work.result()
        except FailState as failed:
            self._close(arn, "FAILED", "ExecutionFailed", failed.error, failed.cause)
        except StatesError as exc:
            self._close(arn, "FAILED", "ExecutionFailed", exc.error, exc.cause)
        else:
            text = dumps(output)
            self.store.finish(arn, "SUCCEEDED", "ExecutionSucceeded",
                              {"output": text, "outputDetails": {"truncated": False}},
                              self.clock.now(), output=text)

    def _close(self, arn: str, status: str, event: str, error: str, cause: str) -> None:
        details = {"error": error, "cause": cause} if cause else {"error": error}
        self.store.finish(arn, status, event, details, self.clock.now(),
                          error=error, cause=cause or None)

    # ---------------------------------------------------------------- integration

    def _integration(self, mode: str) -> Any:
        async def start_execution(call: TaskCall) -> Any:
            params = call.parameters if isinstance(call.parameters, dict) else {}
            machine_arn = params.get("StateMachineArn")
            if not isinstance(machine_arn, str):
                raise StatesError("States.Runtime", "The field 'StateMachineArn' is required "
                                  "by states:startExecution.")
            payload = params.get("Input", {})
            text = payload if isinstance(payload, str) else dumps(payload)
            try:
                arns.parse(machine_arn, "stateMachine")
                machine = self.store.machine(machine_arn)
                if machine is None:
                    raise AwsError("StateMachineDoesNotExist",
                                   f"State Machine Does Not Exist: '{machine_arn}'")
                name = params.get("Name")
                row = self.start(machine, str(name) if name is not None else None, text)
            except AwsError as exc:
                raise StatesError(f"StepFunctions.{exc.code}Exception", exc.message) from None
            if mode == "start":
                return {"ExecutionArn": row["arn"],
                        "StartDate": int(float(row["started"]) * 1000)}
            final = await self.wait(str(row["arn"]))
            result = _sync_output(final, parse=mode == "sync2")
            if final["status"] != "SUCCEEDED":
                raise StatesError(errors.TASK_FAILED, dumps(result))
            return result

        return start_execution


def _sync_output(row: Row, parse: bool) -> dict[str, Any]:
    def data(text: str | None) -> Any:
        return json.loads(text) if parse and text is not None else text

    out: dict[str, Any] = {
        "ExecutionArn": row["arn"], "StateMachineArn": row["machine_arn"],
        "Name": row["name"], "Status": row["status"],
        "StartDate": int(float(row["started"]) * 1000),
        "Input": data(row["input"]), "InputDetails": {"Included": True},
    }
    if row["stopped"] is not None:
        out["StopDate"] = int(float(row["stopped"]) * 1000)
    if row["output"] is not None:
        out["Output"] = data(row["output"])
        out["OutputDetails"] = {"Included": True}
    if row["error"] is not None:
        out["Error"] = row["error"]
    if row["cause"] is not None:
        out["Cause"] = row["cause"]
    return out
