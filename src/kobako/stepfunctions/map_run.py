"""The distributed Map: a Map Run that starts one child execution per item (or batch).

STANDARD children are real executions (own history, `mapRunArn`, listed by
ListExecutions(mapRunArn=...)), named deterministically from the Map Run and the
item index, so a parent resumed after `kill -9` re-attaches to its Map Run and to the
children already started instead of starting them twice. EXPRESS children run in
memory and keep no history, as in AWS. MaxConcurrency and the failure tolerance can
change while the run goes (UpdateMapRun); crossing the tolerance aborts the running
children and fails the state with States.ExceedToleratedFailureThreshold.

RedriveExecution of the parent redrives the state's failed (or aborted) Map Run
instead of starting a new one, as AWS does: same ARN, a MapRunRedriven event, its
redriveCount up by one; STANDARD children that succeeded keep their results, failed
ones are redriven (RedriveExecution, from the state where they failed), ones never
started are started; EXPRESS children that succeeded are remembered when the run
fails (`settled`) and the others run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.stepfunctions import arns, errors, jsonata_ql, template
from kobako.stepfunctions.clock import Clock
from kobako.stepfunctions.engine import (
    Context,
    Cursor,
    FailState,
    Frame,
    Interpreter,
    dumps,
    iso,
    map_items,
)
from kobako.stepfunctions.errors import StatesError
from kobako.stepfunctions.executions import Executions
from kobako.stepfunctions.item_reader import batches, read_items
from kobako.stepfunctions.map_run_store import MapRunStore, zero_counts
from kobako.stepfunctions.result_writer import (
    ChildResult,
    WriterConfig,
    exports,
    preview,
    write,
)
from kobako.stepfunctions.s3_objects import S3Objects
from kobako.store.db import Row

_FAILED = {"FAILED": "failed", "TIMED_OUT": "timedOut", "ABORTED": "aborted"}
THRESHOLD_CAUSE = "The specified tolerated failure threshold was exceeded"


@dataclass
class Live:
    """A running Map Run's mutable limits and counts (UpdateMapRun writes here)."""

    arn: str
    max_concurrency: int
    tolerated_count: int | None
    tolerated_pct: float | None
    items: dict[str, int] = field(default_factory=zero_counts)
    executions: dict[str, int] = field(default_factory=zero_counts)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    express: bool = False
    # A redrive: the children that succeeded before (EXPRESS: index -> result, output),
    # and the EXPRESS ones that had failed; STANDARD ones are found by their rows.
    redriving: bool = False
    settled: dict[int, tuple[ChildResult, Any]] = field(default_factory=dict)
    failed_before: set[int] = field(default_factory=set)
    results: list[ChildResult] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)

    def exceeded(self) -> bool:
        failures = self.executions["failed"] + self.executions["timedOut"] + \
            self.executions["aborted"]
        if self.tolerated_count is None and self.tolerated_pct is None:
            return failures > 0
        total = max(self.executions["total"], 1)
        return (self.tolerated_count is not None and failures > self.tolerated_count) or (
            self.tolerated_pct is not None and failures * 100 > self.tolerated_pct * total)


@dataclass
class Plan:
    """What one Map Run executes."""

    machine_arn: str  # the parent machine's ARN + "/" + label
    definition: dict[str, Any]
    execution_type: str
    inputs: list[Any]
    sizes: list[int]  # items in each child's input (batches hold several)
    role_arn: str = ""


class MapRuns:
    def __init__(self, store: MapRunStore, executions: Executions, clock: Clock) -> None:
        self.store = store
        self.executions = executions
        self.clock = clock
        self.s3: S3Objects | None = None  # set by `connect` when S3 is served
        self.live: dict[str, Live] = {}

    # ---------------------------------------------------------------- entry point

    async def run(self, interpreter: Interpreter, name: str, state: dict[str, Any],
                  data: Any, frame: Frame, states: dict[str, Any] | None) -> Any:
        plan = await self._plan(interpreter, state, data, frame, states)
        interpreter.emit(frame, "MapStateStarted", {"length": len(plan.inputs)})
        live, how = self._open(interpreter, name, state, data, frame, plan)
        if how == "started":
            interpreter.emit(frame, "MapRunStarted", {"mapRunArn": live.arn})
        elif how == "redriven":
            row = self.store.get(live.arn)
            assert row is not None
            interpreter.emit(frame, "MapRunRedriven", {
                "mapRunArn": live.arn, "redriveCount": int(row["redrive_count"])})
        self.live[live.arn] = live
        try:
            results, outputs = await self._dispatch(interpreter, live, plan)
            failed = live.exceeded()
            output: Any = outputs
            writer = state.get("ResultWriter")
            if isinstance(writer, dict) and not exports(writer):
                output = preview(writer, results)
            elif isinstance(writer, dict):
                params = self._render(writer, data, frame, states)
                output = await write(self.s3, params, live.arn, results,
                                     interpreter.region, interpreter.account_id,
                                     WriterConfig.of(writer, "NONE"))
                live.items["resultsWritten"] = live.items["succeeded"] + \
                    live.items["failed"] + live.items["timedOut"] + live.items["aborted"]
                live.executions["resultsWritten"] = len(
                    [r for r in results if r.status != "PENDING"])
        except asyncio.CancelledError:
            self._close(live, "ABORTED")
            raise
        except StatesError as exc:
            self._close(live, "FAILED", exc.error, exc.cause)
            interpreter.emit(frame, "MapRunFailed", {"error": exc.error, "cause": exc.cause})
            interpreter.emit(frame, "MapStateFailed")
            raise
        finally:
            self.live.pop(live.arn, None)
        if failed:
            self._close(live, "FAILED", errors.TOLERATED_FAILURE, THRESHOLD_CAUSE)
            interpreter.emit(frame, "MapRunFailed", {"error": errors.TOLERATED_FAILURE,
                                                     "cause": THRESHOLD_CAUSE})
            interpreter.emit(frame, "MapStateFailed")
            raise StatesError(errors.TOLERATED_FAILURE, THRESHOLD_CAUSE)
        self._close(live, "SUCCEEDED")
        interpreter.emit(frame, "MapRunSucceeded")
        interpreter.emit(frame, "MapStateSucceeded")
        return output

    # ---------------------------------------------------------------- items

    def _render(self, holder: dict[str, Any], data: Any, frame: Frame,
                states: dict[str, Any] | None) -> dict[str, Any]:
        """A reader's or writer's Parameters (JSONPath) or Arguments (JSONata)."""
        if states is not None:
            value = jsonata_ql.render(holder.get("Arguments", {}), states, frame.scope)
        else:
            value = template.render(holder.get("Parameters", {}), data, frame.context)
        return value if isinstance(value, dict) else {}

    def _number(self, state: dict[str, Any], key: str, data: Any, frame: Frame) -> Any:
        if key + "Path" in state:
            return template.read_path(str(state[key + "Path"]), data, frame.context,
                                      key + "Path")
        return state.get(key)

    async def _plan(self, interpreter: Interpreter, state: dict[str, Any], data: Any,
                    frame: Frame, states: dict[str, Any] | None) -> Plan:
        ctx = frame.context
        reader = state.get("ItemReader")
        if isinstance(reader, dict):
            config = dict(reader.get("ReaderConfig") or {})
            if "MaxItemsPath" in config:
                config["MaxItems"] = template.read_path(str(config["MaxItemsPath"]), data,
                                                        ctx, "MaxItemsPath")
            elif states is not None and jsonata_ql.expression(config.get("MaxItems")):
                config["MaxItems"] = jsonata_ql.render(config["MaxItems"], states,
                                                       frame.scope)
            items = await read_items(self.s3, reader, self._render(reader, data, frame, states),
                                     config, interpreter.region, interpreter.account_id)
        else:
            items = map_items(state, data, frame, states)
        if not isinstance(items, list):
            raise StatesError(errors.RUNTIME, f"Map state input must be an array, got "
                              f"'{template.preview(items)}'")
        selector = state.get("ItemSelector", state.get("Parameters"))
        if selector is not None:
            items = [self._select(selector, data, frame, states, index, item)
                     for index, item in enumerate(items)]
        batcher = state.get("ItemBatcher")
        if isinstance(batcher, dict):
            resolved = dict(batcher)
            for key in ("MaxItemsPerBatch", "MaxInputBytesPerBatch"):
                resolved[key] = self._number(batcher, key, data, frame)
                if resolved[key] is None:
                    del resolved[key]
            batch_input = None
            if "BatchInput" in batcher:
                batch_input = jsonata_ql.render(batcher["BatchInput"], states, frame.scope) \
                    if states is not None else template.render(batcher["BatchInput"], data,
                                                               ctx, "BatchInput")
            inputs = batches(items, resolved, batch_input)
            sizes = [len(batch["Items"]) for batch in inputs]
        else:
            inputs, sizes = items, [1] * len(items)
        processor = dict(state["ItemProcessor"])
        config = processor.pop("ProcessorConfig")
        if frame.language == "JSONata":
            processor.setdefault("QueryLanguage", "JSONata")
        parsed = arns.parse(interpreter.execution_arn)
        label = str(state.get("Label") or uuid.uuid4())
        machine = f"arn:aws:states:{parsed.region}:{parsed.account}:stateMachine:" \
            f"{parsed.name.split('/')[0]}/{label}"
        role = str((ctx.get("Execution") or {}).get("RoleArn") or
                   f"arn:aws:iam::{parsed.account}:role/kobako")
        return Plan(machine, processor, str(config.get("ExecutionType", "STANDARD")),
                    inputs, sizes, role)

    def _select(self, selector: Any, data: Any, frame: Frame, states: dict[str, Any] | None,
                index: int, item: Any) -> Any:
        context = dict(frame.context)
        context["Map"] = {"Item": {"Index": index, "Value": item}}
        if states is not None:
            return jsonata_ql.render(selector, {**states, "context": context}, frame.scope)
        holder = Context(context)
        holder.variables = frame.scope
        return template.render(selector, data, holder, "ItemSelector")

    # ---------------------------------------------------------------- the run

    def _open(self, interpreter: Interpreter, name: str, state: dict[str, Any], data: Any,
              frame: Frame, plan: Plan) -> tuple[Live, str]:
        """The Map Run to use: the one this state entry already started ("resumed"), the
        failed one a redriven entry redrives ("redriven"), or a new one ("started")."""
        entered = frame.entered if frame.entered is not None else -1
        found = self.store.find(interpreter.execution_arn, name, entered) \
            if entered >= 0 else None
        if found is not None:
            plan.machine_arn = str(found["machine_arn"])  # its label, not a new one
            live = Live(str(found["arn"]), int(found["max_concurrency"]),
                        found["tolerated_count"], found["tolerated_pct"],
                        express=plan.execution_type == "EXPRESS")
            self._totals(live, plan)
            return live, "resumed"
        last = self.store.last_unsuccessful(interpreter.execution_arn, name) \
            if entered >= 0 and frame.cursor is not None and frame.cursor.redriven else None
        if last is not None and last["status"] in ("FAILED", "ABORTED"):
            return self._redrive(last, entered, plan), "redriven"
        concurrency = self._number(state, "MaxConcurrency", data, frame) or 0
        count = self._number(state, "ToleratedFailureCount", data, frame)
        pct = self._number(state, "ToleratedFailurePercentage", data, frame)
        run_id = str(uuid.uuid4())
        machine = plan.machine_arn.split(":stateMachine:", 1)[1]
        arn = f"{interpreter.execution_arn.split(':execution:')[0]}:mapRun:{machine}:{run_id}"
        live = Live(arn, int(concurrency), None if count is None else int(count),
                    None if pct is None else float(pct),
                    express=plan.execution_type == "EXPRESS")
        self._totals(live, plan)
        self.store.insert({
            "arn": arn, "execution_arn": interpreter.execution_arn, "state_name": name,
            "entered": entered, "machine_arn": plan.machine_arn, "status": "RUNNING",
            "started": self.clock.now(), "max_concurrency": live.max_concurrency,
            "tolerated_count": live.tolerated_count, "tolerated_pct": live.tolerated_pct,
            "item_counts": json.dumps(live.items),
            "execution_counts": json.dumps(live.executions)})
        return live, "started"

    def _redrive(self, row: Row, entered: int, plan: Plan) -> Live:
        """Make a failed or aborted Map Run RUNNING again under the new state entry."""
        arn = str(row["arn"])
        plan.machine_arn = str(row["machine_arn"])
        live = Live(arn, int(row["max_concurrency"]), row["tolerated_count"],
                    row["tolerated_pct"], express=plan.execution_type == "EXPRESS",
                    redriving=True)
        for key, kept in json.loads(row["settled"] or "{}").items():
            if kept is None:
                live.failed_before.add(int(key))
            else:
                live.settled[int(key)] = (ChildResult(**kept[0]), kept[1])
        self._totals(live, plan)
        before = json.loads(row["execution_counts"])
        live.executions["pendingRedrive"] = sum(
            int(before.get(k, 0)) for k in ("failed", "timedOut", "aborted"))
        items = json.loads(row["item_counts"])
        live.items["pendingRedrive"] = sum(
            int(items.get(k, 0)) for k in ("failed", "timedOut", "aborted"))
        self.store.update(arn, status="RUNNING", stopped=None, error=None, cause=None,
                          entered=entered, redrive_count=int(row["redrive_count"]) + 1,
                          redrived=self.clock.now(), item_counts=live.items,
                          execution_counts=live.executions)
        return live

    def _redriven_child(self, live: Live, size: int) -> None:
        """One of the children that had failed runs again: no longer pending redrive."""
        for counts, amount in ((live.executions, 1), (live.items, size)):
            counts["pendingRedrive"] = max(0, counts["pendingRedrive"] - amount)

    def _totals(self, live: Live, plan: Plan) -> None:
        live.items.update(total=sum(plan.sizes), pending=sum(plan.sizes))
        live.executions.update(total=len(plan.inputs), pending=len(plan.inputs))

    def _close(self, live: Live, status: str, error: str | None = None,
               cause: str | None = None) -> None:
        changes: dict[str, Any] = {}
        if live.express and status != "SUCCEEDED":  # what a redrive needs not run again
            changes["settled"] = json.dumps({
                str(index): [dataclasses.asdict(result), live.outputs[index]]
                if result.status == "SUCCEEDED" else None
                for index, result in enumerate(live.results) if result.status != "PENDING"})
        self.store.update(live.arn, status=status, stopped=self.clock.now(), error=error,
                          cause=cause, item_counts=live.items,
                          execution_counts=live.executions, **changes)

    def _count(self, live: Live, size: int, before: str, after: str) -> None:
        live.items[before] -= size
        live.items[after] += size
        live.executions[before] -= 1
        live.executions[after] += 1

    async def _dispatch(self, interpreter: Interpreter, live: Live,
                        plan: Plan) -> tuple[list[ChildResult], list[Any]]:
        total = len(plan.inputs)
        results = [ChildResult("PENDING", dumps(value)) for value in plan.inputs]
        outputs: list[Any] = [None] * total
        live.results, live.outputs = results, outputs
        running: dict[asyncio.Future[Any], int] = {}
        arns_by_index: dict[int, str] = {}
        following = 0
        aborting = False
        try:
            while True:
                while not live.exceeded() and following < total and (
                        live.max_concurrency <= 0 or len(running) < live.max_concurrency):
                    index = following
                    following += 1
                    if index in live.settled:  # it succeeded before a redrive
                        results[index], outputs[index] = live.settled[index]
                        self._count(live, plan.sizes[index], "pending", "succeeded")
                        continue
                    if index in live.failed_before:
                        self._redriven_child(live, plan.sizes[index])
                    self._count(live, plan.sizes[index], "pending", "running")
                    started = asyncio.ensure_future(self._child(
                        interpreter, live, plan, index, arns_by_index))
                    running[started] = index
                if not running:
                    break
                waiter = asyncio.ensure_future(live.changed.wait())
                done, _ = await asyncio.wait([*running, waiter],
                                             return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                live.changed.clear()
                for finished in done:
                    if finished is waiter:
                        continue
                    index = running.pop(finished)
                    if finished.cancelled():  # an EXPRESS child aborted below
                        result, output = ChildResult("ABORTED", results[index].input), None
                    else:
                        result, output = finished.result()
                    results[index] = result
                    outputs[index] = output
                    after = "succeeded" if result.status == "SUCCEEDED" else \
                        _FAILED.get(result.status, "failed")
                    self._count(live, plan.sizes[index], "running", after)
                self.store.update(live.arn, item_counts=live.items,
                                  execution_counts=live.executions)
                if live.exceeded() and running and not aborting:
                    aborting = True  # the children still running end as ABORTED
                    self._stop(running, arns_by_index)
        except asyncio.CancelledError:
            await self._abort(running, arns_by_index)
            raise
        return results, outputs

    def _stop(self, running: dict[asyncio.Future[Any], int],
              arns_by_index: dict[int, str]) -> None:
        """Abort the children still running: STANDARD ones through StopExecution (they
        report ABORTED), EXPRESS ones by cancelling them."""
        for task, index in running.items():
            arn = arns_by_index.get(index)
            if arn is None:
                task.cancel()
            else:
                with contextlib.suppress(AwsError):
                    self.executions.stop(arn, None, None)

    async def _abort(self, running: dict[asyncio.Future[Any], int],
                     arns_by_index: dict[int, str]) -> None:
        """The parent is going away: abort the children and wait for them to end."""
        self._stop(running, arns_by_index)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _child(self, interpreter: Interpreter, live: Live, plan: Plan, index: int,
                     arns_by_index: dict[int, str]) -> tuple[ChildResult, Any]:
        text = dumps(plan.inputs[index])
        name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{live.arn}#{index}"))
        if plan.execution_type == "EXPRESS":
            return await self._express(interpreter, plan, name, text)
        machine = {"arn": plan.machine_arn, "type": "STANDARD",
                   "definition": dumps(plan.definition), "role_arn": plan.role_arn}
        arn = arns.execution_arn(plan.machine_arn, name)
        arns_by_index[index] = arn
        before = self.executions.store.execution(arn)
        if before is None:
            with contextlib.suppress(AwsError):
                self.executions.start(machine, name, text, map_run=live.arn)
        elif live.redriving and before["status"] in _FAILED:
            try:  # it runs again from the state where it failed
                self.executions.redrive(arn)
                self._redriven_child(live, plan.sizes[index])
            except AwsError:
                live.executions["failuresNotRedrivable"] += 1
                live.items["failuresNotRedrivable"] += plan.sizes[index]
        # otherwise it ran (or runs) already, before a restart: its row holds it
        row = await self.executions.wait(arn)
        output = json.loads(row["output"]) if row["output"] is not None else None
        if row["status"] != "SUCCEEDED":
            output = {"Error": row["error"], "Cause": row["cause"]}
        return ChildResult(
            str(row["status"]), text, arn, name, plan.machine_arn, iso(row["started"]),
            iso(row["stopped"]) if row["stopped"] is not None else None,
            row["output"], row["error"], row["cause"]), output

    async def _express(self, interpreter: Interpreter, plan: Plan, name: str,
                       text: str) -> tuple[ChildResult, Any]:
        from kobako.stepfunctions.express import _Memory  # the history AWS does not keep

        arn = arns.execution_arn(plan.machine_arn, name).replace(":execution:", ":express:")
        parsed = arns.parse(interpreter.execution_arn)
        started = self.clock.now()
        child = Interpreter(_Memory(), self.clock, interpreter.integrations, arn,
                            parsed.region, parsed.account, tokens=interpreter.tokens,
                            activity_exists=interpreter.activity_exists, map_runs=self)
        context = {"Execution": {"Id": arn, "Input": json.loads(text), "Name": name,
                                 "StartTime": iso(started)},
                   "StateMachine": {"Id": plan.machine_arn,
                                    "Name": plan.machine_arn.rsplit(":", 1)[1]}}
        status, output, error, cause = "SUCCEEDED", None, None, None
        try:
            output = await child.run(plan.definition, Cursor(
                str(plan.definition["StartAt"]), json.loads(text)), Frame(context))
        except FailState as failed:
            status, error, cause = "FAILED", failed.error, failed.cause
        except StatesError as exc:
            status, error, cause = "FAILED", exc.error, exc.cause
        result = ChildResult(status, text, arn, name, plan.machine_arn, iso(started),
                             iso(self.clock.now()),
                             dumps(output) if status == "SUCCEEDED" else None, error, cause)
        return result, output if status == "SUCCEEDED" else {"Error": error, "Cause": cause}

