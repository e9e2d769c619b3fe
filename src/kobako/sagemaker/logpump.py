"""Copy a process's output lines into CloudWatch Logs, calling back on each line.

Lines are batched while they keep arriving and flushed after 50 ms of quiet, so a
log tail sees output promptly without one transaction per line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kobako.logs.store import LogStore, Scope
from kobako.runtime.base import Attempt, OutputLine


async def pump(attempt: Attempt, logs: LogStore, scope: Scope, group: str, stream: str,
               on_line: Callable[[OutputLine], None] | None = None) -> None:
    batch: list[tuple[int, str]] = []
    lines = attempt.lines().__aiter__()
    pending: asyncio.Future[Any] | None = None
    while True:
        if pending is None:
            pending = asyncio.ensure_future(lines.__anext__())
        if batch:
            done, _ = await asyncio.wait({pending}, timeout=0.05)
            if not done:
                logs.append(scope, group, stream, batch)
                batch = []
                continue
        try:
            line: OutputLine = await pending
        except StopAsyncIteration:
            break
        pending = None
        if on_line is not None:
            on_line(line)
        batch.append((line.timestamp_ms, line.text))
        if len(batch) >= 500:
            logs.append(scope, group, stream, batch)
            batch = []
    if batch:
        logs.append(scope, group, stream, batch)
