"""Blocking engine calls that may last as long as a job (log follows, waits, pulls).

Each gets its own daemon thread rather than a slot in asyncio's shared executor, so
many running jobs cannot starve it, and a call stuck in a socket read after its
timeout fired holds up neither the loop nor interpreter exit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def in_thread(fn: Callable[[], T], name: str = "kobako-engine") -> asyncio.Future[T]:
    """Run `fn` in a new daemon thread; the returned future settles on the running loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            value = fn()
        except BaseException as error:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, None, error)
        else:
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
