"""Shared helpers for the S3 kill -9 tests: writer threads whose acknowledged PUTs must
survive the server being killed under them."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

from conftest import Server


class AcknowledgedPuts:
    """The objects that writer threads PUT into one bucket, kept only once the server
    acknowledged them: these, and only these, must survive a kill -9."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._objects: dict[str, bytes] = {}

    def put(self, client: Any, key: str, body: bytes) -> bool:
        """PUT one object; False when it failed (the server died under us), so that it
        was never acknowledged."""
        try:
            client.put_object(Bucket=self.bucket, Key=key, Body=body)
        except Exception:
            return False
        with self._lock:
            self._objects[key] = body
        return True

    def kill_server_after(self, server: Server, writer: Callable[[int], None], workers: int,
                          count: int, poll_s: float,
                          on_kill: Callable[[], None] | None = None) -> dict[str, bytes]:
        """Run `writer(n)` in `workers` threads, kill -9 the server once `count` PUTs were
        acknowledged, stop the writers (`on_kill` wakes any that wait) and return what
        was acknowledged."""
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(workers)]
        for thread in threads:
            thread.start()
        while len(self._objects) < count:
            threading.Event().wait(poll_s)
        server.kill()
        self.stop.set()
        if on_kill is not None:
            on_kill()
        for thread in threads:
            thread.join(timeout=30)
        with self._lock:
            return dict(self._objects)

    def assert_intact(self, s3: Any, expected: dict[str, bytes]) -> None:
        """Every acknowledged object reads back byte for byte."""
        for key, body in expected.items():
            got = s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest(), key
