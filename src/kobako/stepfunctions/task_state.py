"""Task states: integrations, callbacks (task tokens), activities, timeouts.

A mixin of `engine.Interpreter`. A Task attempt can leave progress in the run's
cursor (`Cursor.task`: a submitted job's id, a handed-out task token) through
`TaskCall.remember`; after `kill -9` the resumed attempt gets it back as
`TaskCall.resume`, so it re-attaches to the job or keeps waiting on the same token
instead of starting the work again.

A `.sync` Task also has a task token (`$$.Task.Token`): as AWS documents for the job
run pattern, the job may send SendTaskHeartbeat with it, and HeartbeatSeconds then
times the Task out when the heartbeats stop. Whatever ends a `.sync` Task early
(TimeoutSeconds, HeartbeatSeconds, StopExecution) stops the job it started; a missed
heartbeat or TimeoutSeconds is States.Timeout with no cause, as in AWS's history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kobako.stepfunctions import errors, template
from kobako.stepfunctions.clock import Clock
from kobako.stepfunctions.errors import StatesError
from kobako.stepfunctions.integrations import ANSWERED, TIMED_OUT, Integrations, TaskCall, describe
from kobako.stepfunctions.payload import check_size, dumps
from kobako.stepfunctions.tokens import TaskTokens

if TYPE_CHECKING:
    from kobako.stepfunctions.engine import Frame, Recorder

WAIT_FOR_TOKEN = ".waitForTaskToken"
_TIMEOUTS = (errors.TIMEOUT, errors.HEARTBEAT_TIMEOUT)


def is_sync(resource: str) -> bool:
    return resource.endswith(".sync") or resource.endswith(".sync:2")


def _failure(kind: str, short: str | None, exc: StatesError) -> dict[str, Any]:
    """A TaskFailed/TaskTimedOut (or Activity*) event's details: no empty cause."""
    details: dict[str, Any] = {"resourceType": kind, "resource": short} if short else {}
    details["error"] = exc.error
    if exc.cause:
        details["cause"] = exc.cause
    return details


async def _settle(*futures: asyncio.Future[Any]) -> None:
    """Wait for cancelled work to finish its own cleanup (stopping a job)."""
    await asyncio.gather(*futures, return_exceptions=True)


def is_activity(resource: str) -> bool:
    parts = resource.split(":")
    return len(parts) == 7 and parts[2] == "states" and parts[5] == "activity"


def _progress(frame: Frame) -> dict[str, Any] | None:
    """What a resumed top-level Task attempt had recorded before the restart."""
    if not frame.durable or frame.cursor is None:
        return None
    return frame.cursor.task


class TaskStates:
    recorder: Recorder
    clock: Clock
    integrations: Integrations
    execution_arn: str
    region: str
    account_id: str
    tokens: TaskTokens | None
    activity_exists: Callable[[str], bool]

    def emit(self, frame: Frame, type: str, details: dict[str, Any] | None = None,
             cursor: Any = None) -> int:
        raise NotImplementedError

    def _remember(self, frame: Frame, info: dict[str, Any] | None) -> None:
        """Keep (or drop) a Task attempt's progress in the durable cursor."""
        if frame.durable and frame.cursor is not None and frame.cursor.task != info:
            frame.cursor.task = info
            self.recorder.checkpoint(frame.cursor)

    def _seconds(self, state: dict[str, Any], key: str, data: Any,
                 ctx: dict[str, Any]) -> float | None:
        if key in state:
            return float(state[key])
        if key + "Path" in state:
            value = template.read_path(str(state[key + "Path"]), data, ctx, key + "Path")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise StatesError(errors.RUNTIME, f"The {key}Path parameter does not "
                                  f"reference a valid positive integer: {dumps(value)}")
            return float(value)
        return None

    def _token(self, state: dict[str, Any], frame: Frame) -> str | None:
        """A task token for a callback or activity Task: fresh for each attempt, or the
        one a resumed attempt had already handed out (kept in the cursor)."""
        resource = str(state["Resource"])
        if is_sync(resource) and self.tokens is not None:
            pass  # the job may heartbeat with it
        elif not (resource.endswith(WAIT_FOR_TOKEN) or is_activity(resource)):
            return None
        if self.tokens is None:
            raise StatesError(errors.RUNTIME, f"kobako cannot wait for task tokens here: "
                              f"'{resource}'.")
        kept = (_progress(frame) or {}).get("token")
        if isinstance(kept, str):
            return self.tokens.adopt(kept, self.execution_arn)
        return self.tokens.issue(self.execution_arn)

    async def _task(self, name: str, state: dict[str, Any], parameters: Any,
                    frame: Frame, token: str | None = None, data: Any = None) -> Any:
        """Run one Task attempt; `data` is the state's effective input, which the
        TimeoutSecondsPath and HeartbeatSecondsPath reference paths read."""
        resource = str(state["Resource"])
        kind, short = describe(resource)
        timeout = self._seconds(state, "TimeoutSeconds", data, frame.context)
        heartbeat = self._seconds(state, "HeartbeatSeconds", data, frame.context)
        if token is not None and is_activity(resource):
            return await self._activity(name, resource, parameters, frame, token, timeout,
                                        heartbeat)
        scheduled: dict[str, Any] = {"resourceType": kind, "resource": short,
                                     "region": self.region, "parameters": dumps(parameters)}
        if timeout is not None:
            scheduled["timeoutInSeconds"] = int(timeout)
        if heartbeat is not None:
            scheduled["heartbeatInSeconds"] = int(heartbeat)
        resumed = _progress(frame)
        if resumed is None:  # a resumed attempt already wrote these
            self.emit(frame, "TaskScheduled", scheduled)
            self.emit(frame, "TaskStarted", {"resourceType": kind, "resource": short})
        callback = resource.endswith(WAIT_FOR_TOKEN)
        base = resource[:-len(WAIT_FOR_TOKEN)] if callback else resource

        def remember(info: dict[str, Any]) -> None:
            self._remember(frame, {**info, "token": token} if token and not callback
                           else info)

        def submitted(output: Any) -> None:
            self.emit(frame, "TaskSubmitted", {"resourceType": kind, "resource": short,
                                               "output": dumps(output),
                                               "outputDetails": {"truncated": False}})

        call = TaskCall(base, parameters, self.execution_arn, self.region,
                        self.account_id, timeout, heartbeat, resumed, remember,
                        submitted if token is not None and not callback else None)
        if token is None:
            work: Awaitable[Any] = self.integrations.invoke(call)
        elif callback:
            work = self._callback(call, token, heartbeat, frame, kind, short)
        else:
            work = self._sync(call, token, heartbeat)
        try:
            result = await self._invoke(work, timeout)
            check_size(result, name)
        except StatesError as exc:
            self._remember(frame, None)  # a retry starts a new attempt
            event = "TaskTimedOut" if exc.error in _TIMEOUTS else "TaskFailed"
            self.emit(frame, event, _failure(kind, short, exc))
            raise
        self.emit(frame, "TaskSucceeded", {"resourceType": kind, "resource": short,
                                           "output": dumps(result)})
        return result

    async def _callback(self, call: TaskCall, token: str, heartbeat: float | None,
                        frame: Frame, kind: str, short: str) -> Any:
        """`.waitForTaskToken`: call the integration, then wait for SendTask*."""
        assert self.tokens is not None
        if call.resume is None or call.resume.get("token") != token:
            submitted = await self.integrations.invoke(call)
            self.emit(frame, "TaskSubmitted", {"resourceType": kind, "resource": short,
                                               "output": dumps(submitted),
                                               "outputDetails": {"truncated": False}})
            self._remember(frame, {"token": token})  # a restart waits on the same token
        return await self.tokens.wait(token, heartbeat)

    async def _sync(self, call: TaskCall, token: str, heartbeat: float | None) -> Any:
        """`.sync`: the job's end, or its token's answer (SendTaskSuccess/Failure), or a
        missed heartbeat, whichever comes first; the job is stopped unless it ended."""
        assert self.tokens is not None
        job = asyncio.ensure_future(self.integrations.invoke(call))
        watch = asyncio.ensure_future(self.tokens.wait(token, heartbeat))
        try:
            await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError as exc:
            job.cancel(*exc.args)
            watch.cancel()
            await _settle(job, watch)
            raise
        if job.done():
            watch.cancel()
            return job.result()
        failed = watch.exception()
        job.cancel(TIMED_OUT if isinstance(failed, StatesError) and failed.heartbeat
                   else ANSWERED)
        await _settle(job)
        return watch.result()

    async def _activity(self, name: str, arn: str, parameters: Any, frame: Frame,
                        token: str, timeout: float | None, heartbeat: float | None) -> Any:
        """An activity Task: queued for GetActivityTask, answered with SendTask*."""
        assert self.tokens is not None
        text = dumps(parameters)
        if not self.activity_exists(arn):
            cause = f"Activity Does Not Exist: '{arn}'"
            self.emit(frame, "ActivityScheduleFailed", {"error": errors.RUNTIME,
                                                        "cause": cause})
            raise StatesError(errors.RUNTIME, cause)
        scheduled: dict[str, Any] = {"resource": arn, "input": text,
                                     "inputDetails": {"truncated": False}}
        if timeout is not None:
            scheduled["timeoutInSeconds"] = int(timeout)
        if heartbeat is not None:
            scheduled["heartbeatInSeconds"] = int(heartbeat)
        self.emit(frame, "ActivityScheduled", scheduled)
        self.tokens.waiting[token].input = text
        self.tokens.schedule(arn, token)
        tokens = self.tokens

        async def work() -> Any:
            worker = await tokens.started(token)
            self.emit(frame, "ActivityStarted", {"workerName": worker} if worker else None)
            return await tokens.wait(token, heartbeat)

        try:
            result = await self._invoke(work(), timeout)
            check_size(result, name)
        except StatesError as exc:
            event = "ActivityTimedOut" if exc.error in _TIMEOUTS else "ActivityFailed"
            self.emit(frame, event, _failure("", None, exc))
            raise
        self.emit(frame, "ActivitySucceeded", {"output": dumps(result),
                                               "outputDetails": {"truncated": False}})
        return result

    async def _invoke(self, call: Awaitable[Any], timeout: float | None) -> Any:
        """The work's result, or States.Timeout after `timeout` seconds; either way the
        work is over (a `.sync` job stopped) before this returns."""
        work = asyncio.ensure_future(call)
        if timeout is None:
            return await work
        timer = asyncio.ensure_future(self.clock.sleep(timeout))
        try:
            done, _ = await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError as exc:
            work.cancel(*exc.args)
            timer.cancel()
            await _settle(work, timer)
            raise
        if work in done:
            timer.cancel()
            return work.result()
        work.cancel(TIMED_OUT)
        await _settle(work)
        raise StatesError(errors.TIMEOUT, "")

