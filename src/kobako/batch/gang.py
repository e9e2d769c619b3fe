"""Running a multi-node parallel job: its nodes start, run and stop as one gang.

The scheduler claimed the parent with the whole gang's vCPUs, memory and GPUs, so every
node fits now (no partial start that could wait for capacity forever). As in AWS, the
main node starts first, then the other nodes, which find it through
AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS (127.0.0.1 here: one host; containers of a
job share the main node's network namespace). Each node records its own end as it
exits; when the main node exits the others are stopped, and the parent takes the main
node's result: SUCCEEDED, FAILED, or RUNNABLE again when the retry strategy retries, in
which case every node waits again and the whole gang restarts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kobako.batch.common import loads, now_ms

# The engine imports this module only when it runs a multi-node job (no import cycle).
from kobako.batch.engine import EXITED, START_FAILED, TIMED_OUT, Engine, Running, gpu_environment
from kobako.batch.store import Ended
from kobako.logs.store import Scope
from kobako.runtime.base import Attempt, AttemptSpec, StartError, exit_reason
from kobako.store.db import Row

log = logging.getLogger("kobako.batch")

MAIN_ADDRESS = "127.0.0.1"
MAIN_EXITED = "Main node exited; the node was stopped"
NOT_STARTED = "The multi-node job ended before this node started"


@dataclass
class NodeEnd:
    code: int | None
    reason: str | None
    status_reason: str
    started: int


@dataclass
class Gang:
    engine: Engine
    parent: Row
    running: Running
    detail: dict[str, Any] = field(init=False)
    nodes: list[Row] = field(init=False)
    main: int = field(init=False)
    ended: set[str] = field(default_factory=set)
    workdirs: list[Path] = field(default_factory=list)
    main_exited: bool = False

    def __post_init__(self) -> None:
        self.detail = loads(self.parent["detail"])
        self.nodes = self.engine.store.nodes(self.running.job_id)
        self.main = int(self.detail["nodeProperties"]["mainNode"])

    # ------------------------------------------------------------ one node

    def _spec(self, node: Row, gpu_ids: tuple[str, ...], main_ref: str | None) -> AttemptSpec:
        engine, parent = self.engine, self.parent
        container = loads(node["detail"])["container"]
        env = {e["name"]: e.get("value", "") for e in container.get("environment") or []}
        env.update({
            "AWS_BATCH_JOB_ID": str(node["job_id"]),
            "AWS_BATCH_JOB_ATTEMPT": str(len(loads(parent["attempts"]) or []) + 1),
            "AWS_BATCH_JQ_NAME": str(parent["queue_arn"]).rsplit("/", 1)[-1],
            "AWS_BATCH_CE_NAME": self.running.ce_arn.rsplit("/", 1)[-1],
            "AWS_BATCH_JOB_NODE_INDEX": str(node["node_index"]),
            "AWS_BATCH_JOB_NUM_NODES": str(parent["num_nodes"]),
            "AWS_BATCH_JOB_MAIN_NODE_INDEX": str(self.main),
        })
        choice = engine._runtime_choice(self.running.ce_arn)
        if main_ref is not None:
            # Only the other nodes learn the main node's address, as in AWS.
            env["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = MAIN_ADDRESS
            if main_ref.startswith("container:"):
                choice["options"]["network_mode"] = f"container:{main_ref.split(':', 1)[1]}"
        env.update(gpu_environment(engine.host, gpu_ids))
        workdir = engine._workdirs.take()
        self.workdirs.append(workdir)
        return AttemptSpec(argv=list(container.get("command") or []), env=env, workdir=workdir,
                           vcpus=float(node["vcpus"]),
                           memory_mib=int(node["memory"]) if node["memory"] else None,
                           gpus=int(node["gpus"]), image=container.get("image"),
                           properties=container, gpu_ids=gpu_ids, **choice)

    async def _follow(self, node: Row, attempt: Attempt, started: int,
                      timeout: float | None = None) -> NodeEnd:
        """Copy the node's output to its log stream and wait for its exit."""
        node_id = str(node["job_id"])
        stream = f"{self.detail['jobDefinitionName']}/default/{node_id}"
        scope = Scope(self.parent["account"], self.parent["region"])
        pump = asyncio.create_task(self.engine._pump(attempt, scope, stream))
        try:
            if timeout is None:
                code = await attempt.wait()
            else:
                try:
                    code = await asyncio.wait_for(asyncio.shield(attempt.wait()), timeout)
                except TimeoutError:
                    self.running.timed_out = True
                    await self._kill_all()
                    code = await attempt.wait()
            await pump
        finally:
            if not pump.done():
                pump.cancel()
        if self.running.stop_reason is not None:
            why = self.running.stop_reason
        elif self.running.timed_out:
            why = TIMED_OUT
        elif self.main_exited and code != 0 and int(node["node_index"]) != self.main:
            why = MAIN_EXITED
        else:
            why = EXITED
        return NodeEnd(code, exit_reason(attempt), why, started)

    def _record_node(self, node: Row, end: NodeEnd) -> None:
        """A node's own end, written as it happens (its parent may still run)."""
        node_id = str(node["job_id"])
        task = node_id.replace(":", "-").replace("#", "-")
        container: dict[str, Any] = {
            "logStreamName": f"{self.detail['jobDefinitionName']}/default/{node_id}",
            "taskArn": f"arn:aws:ecs:{node['region']}:{node['account']}:task/kobako/{task}",
        }
        if end.code is not None:
            container["exitCode"] = end.code
        if end.reason:
            container["reason"] = end.reason
        attempt = {"container": container, "startedAt": end.started, "stoppedAt": now_ms(),
                   "statusReason": end.status_reason}
        attempts = [*(loads(node["attempts"]) or []), attempt]
        status = "SUCCEEDED" if end.code == 0 else "FAILED"
        terminated = self.running.stop_reason is not None
        self.engine._ended.append(Ended(node_id, attempts, status, end.status_reason,
                                        terminated))
        self.ended.add(node_id)
        self.engine._wake_later()

    async def _child(self, node: Row, attempt: Attempt, started: int) -> None:
        self._record_node(node, await self._follow(node, attempt, started))

    async def _kill_all(self) -> None:
        for attempt in list(self.running.nodes.values()):
            await attempt.kill()

    # ------------------------------------------------------------ the gang

    async def run(self) -> None:
        engine, running = self.engine, self.running
        gpus = list(running.gpu_ids)
        shares: dict[str, tuple[str, ...]] = {}
        for node in self.nodes:
            need = int(node["gpus"])
            shares[str(node["job_id"])] = tuple(gpus[:need])
            del gpus[:need]
        main_node = self.nodes[self.main]
        main_id = str(main_node["job_id"])
        children: list[asyncio.Task[None]] = []
        started = now_ms()
        try:
            try:
                main = await engine.runtime.start(self._spec(main_node, shares[main_id], None))
            except StartError as error:
                self._record_node(main_node, NodeEnd(None, error.reason, error.reason, started))
                self._finish(None, error.reason, error.reason, started)
                return
            running.nodes[main_id] = main
            engine._started.append((main_id, started, main.ref, running.job_id))
            engine._started.append((running.job_id, started, "", None))
            engine._wake_later()
            for node in self.nodes:
                node_id = str(node["job_id"])
                if node_id == main_id or running.stop_reason is not None:
                    continue
                at = now_ms()
                try:
                    attempt = await engine.runtime.start(
                        self._spec(node, shares[node_id], main.ref))
                except StartError as error:
                    self._record_node(node, NodeEnd(None, error.reason, error.reason, at))
                    continue
                running.nodes[node_id] = attempt
                engine._started.append((node_id, at, attempt.ref, running.job_id))
                engine._wake_later()
                children.append(asyncio.create_task(self._child(node, attempt, at)))
            if running.stop_reason is not None:
                await self._kill_all()
            seconds = (self.detail.get("timeout") or {}).get("attemptDurationSeconds")
            end = await self._follow(main_node, main, started,
                                     None if seconds is None else float(seconds))
            self.main_exited = True
            for node_id, attempt in list(running.nodes.items()):
                if node_id != main_id:
                    await attempt.kill()
            await asyncio.gather(*children, return_exceptions=True)
            self._record_node(main_node, end)
            self._finish(end.code, end.reason, end.status_reason, started)
        except asyncio.CancelledError:
            await self._kill_all()
            for task in children:
                task.cancel()
            raise
        except Exception:
            log.exception("batch multi-node job %s failed", running.job_id)
            await self._kill_all()
            await asyncio.gather(*children, return_exceptions=True)
            self._finish(None, "kobako internal error", START_FAILED, started)
        finally:
            if not engine._stopping:
                for workdir in self.workdirs:
                    engine._workdirs.give(workdir)
                engine.running.pop(running.job_id, None)
                engine._pass_now()

    def _finish(self, code: int | None, reason: str | None, status_reason: str,
                started: int) -> None:
        """The parent takes the main node's result; nodes that never ran end with it."""
        stopped = self.running.stop_reason
        main_id = str(self.nodes[self.main]["job_id"])
        if stopped is not None:
            status_reason = stopped
        elif self.running.timed_out:
            status_reason = TIMED_OUT
        status = self.engine._record(self.parent, self.detail, code, reason, status_reason,
                                     started, final=stopped is not None,
                                     terminated=stopped is not None, task_of=main_id)
        if status == "RUNNABLE":
            return  # every node waits again (Ended.nodes_again)
        for node in self.nodes:
            node_id = str(node["job_id"])
            if node_id not in self.ended:
                self.engine._ended.append(Ended(node_id, loads(node["attempts"]) or [],
                                                "FAILED", stopped or NOT_STARTED,
                                                stopped is not None))


async def run_gang(engine: Engine, parent: Row, running: Running) -> None:
    await Gang(engine, parent, running).run()


def record_died(engine: Engine, parent: Row, reason: str) -> None:
    """After a crash: the gang's attempt failed; its nodes end with it, or all wait again
    when the parent is retried."""
    detail = loads(parent["detail"])
    nodes = engine.store.nodes(str(parent["job_id"]))
    main = int(detail["nodeProperties"]["mainNode"])
    main_id = str(nodes[main]["job_id"]) if main < len(nodes) else None
    started = int(parent["attempt_started"] or parent["started_at"] or now_ms())
    status = engine._record(parent, detail, None, reason, reason, started, task_of=main_id)
    if status == "RUNNABLE":
        return
    for node in nodes:
        if node["status"] not in ("STARTING", "RUNNING"):
            continue
        attempts = loads(node["attempts"]) or []
        if node["status"] == "RUNNING":
            attempts = [*attempts, {
                "container": {"logStreamName":
                              f"{detail['jobDefinitionName']}/default/{node['job_id']}",
                              "reason": reason},
                "startedAt": int(node["attempt_started"] or started), "stoppedAt": now_ms(),
                "statusReason": reason}]
        engine._ended.append(Ended(str(node["job_id"]), attempts, "FAILED", reason))
