"""Task tokens: Tasks that wait for SendTaskSuccess/Failure (callbacks and activities).

A `.waitForTaskToken` Task or an activity Task gets a token, puts it where a worker
can see it (`$$.Task.Token`, or an activity's queue for GetActivityTask) and waits
here. Heartbeats push the HeartbeatSeconds deadline back; missing it times the
state out (States.Timeout, which a States.HeartbeatTimeout catcher also matches).
`.sync` Tasks get a token too, for the job to send heartbeats with. A Task's token
is kept in the execution's cursor once handed out, so after a restart it is waited
on again (`adopt`) and SendTaskSuccess still completes it; activity tasks are
scheduled anew.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.stepfunctions.clock import Clock
from kobako.stepfunctions.errors import StatesError, heartbeat_timeout

_MARK = "kbk1"


@dataclass
class Waiting:
    execution_arn: str
    future: asyncio.Future[Any]
    input: str = "{}"
    beat: float = 0.0
    worker: str | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class ActivityQueue:
    """Scheduled activity tasks and the GetActivityTask calls waiting for one."""

    pending: deque[str] = field(default_factory=deque)
    pollers: deque[asyncio.Future[str]] = field(default_factory=deque)


class TaskTokens:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waiting: dict[str, Waiting] = {}
        self.queues: dict[str, ActivityQueue] = {}

    # ---------------------------------------------------------------- engine side

    def issue(self, execution_arn: str, input_text: str = "{}") -> str:
        raw = f"{_MARK}:{secrets.token_urlsafe(32)}:{execution_arn}".encode()
        return self.adopt(base64.urlsafe_b64encode(raw).decode(), execution_arn, input_text)

    def adopt(self, token: str, execution_arn: str, input_text: str = "{}") -> str:
        """Wait on `token` (a fresh one, or one handed out before a restart)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[token] = Waiting(execution_arn, future, input_text, self.clock.now())
        return token

    def schedule(self, activity_arn: str, token: str) -> None:
        """Offer the task to a waiting GetActivityTask, or queue it for the next one."""
        queue = self.queues.setdefault(activity_arn, ActivityQueue())
        while queue.pollers:
            poller = queue.pollers.popleft()
            if not poller.done():
                poller.set_result(token)
                return
        queue.pending.append(token)

    def release(self, token: str) -> None:
        """The Task is over (answered, timed out, cancelled): forget its token."""
        waiting = self.waiting.pop(token, None)
        if waiting is not None and not waiting.future.done():
            waiting.future.cancel()
        for queue in self.queues.values():
            with contextlib.suppress(ValueError):
                queue.pending.remove(token)

    async def started(self, token: str) -> str | None:
        """Until a worker picks the activity task up; the worker's name."""
        waiting = self.waiting[token]
        await waiting.started.wait()
        waiting.beat = self.clock.now()
        return waiting.worker

    async def wait(self, token: str, heartbeat: float | None) -> Any:
        """The output a worker sends, or StatesError for a failure or a missed heartbeat."""
        waiting = self.waiting[token]
        waiting.beat = max(waiting.beat, self.clock.now())
        while True:
            if heartbeat is None:
                return await asyncio.shield(waiting.future)
            remaining = waiting.beat + heartbeat - self.clock.now()
            if remaining <= 0:
                raise heartbeat_timeout()
            sleeper = asyncio.ensure_future(self.clock.sleep(remaining))
            try:
                await asyncio.wait({waiting.future, sleeper},
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
            if waiting.future.done():
                return waiting.future.result()

    # ---------------------------------------------------------------- API side

    def _find(self, token: str) -> Waiting:
        try:
            text = base64.urlsafe_b64decode(token.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            text = ""
        if not text.startswith(_MARK + ":"):
            raise AwsError("InvalidToken", "Invalid Token: 'Invalid token'")
        waiting = self.waiting.get(token)
        if waiting is None or waiting.future.done():
            raise AwsError("TaskTimedOut",
                           "Task Timed Out: 'Provided task does not exist anymore'")
        return waiting

    def succeed(self, token: str, output: str) -> None:
        waiting = self._find(token)
        try:
            value = json.loads(output)
        except json.JSONDecodeError as exc:
            raise AwsError("InvalidOutput", f"Invalid Output: '{exc}'") from None
        waiting.future.set_result(value)

    def fail(self, token: str, error: str | None, cause: str | None) -> None:
        self._find(token).future.set_exception(StatesError(error or "", cause or ""))

    def heartbeat(self, token: str) -> None:
        self._find(token).beat = self.clock.now()

    async def poll(self, activity_arn: str, worker: str | None,
                   seconds: float) -> tuple[str, str] | None:
        """GetActivityTask's long poll: (token, input) or None after `seconds`."""
        queue = self.queues.setdefault(activity_arn, ActivityQueue())
        while True:
            token = self._next_pending(queue)
            if token is None:
                poller: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                queue.pollers.append(poller)
                try:
                    token = await asyncio.wait_for(asyncio.shield(poller), seconds)
                except TimeoutError:
                    if not poller.done():
                        poller.cancel()
                        return None
                    token = poller.result()
                finally:
                    with contextlib.suppress(ValueError):
                        queue.pollers.remove(poller)
            waiting = self.waiting.get(token)
            if waiting is None or waiting.future.done():
                continue  # cancelled while it was being handed over
            waiting.worker = worker
            waiting.started.set()
            return token, waiting.input

    def _next_pending(self, queue: ActivityQueue) -> str | None:
        while queue.pending:
            token = queue.pending.popleft()
            if token in self.waiting:
                return token
        return None
