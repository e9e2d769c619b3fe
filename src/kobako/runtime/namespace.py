"""Bind mounts in a private mount namespace: how a process sees its job directory at
the path a container would (/opt/ml) without a container.

SageMaker's contract, the SDK's own drivers and many user scripts hard-code /opt/ml
paths. The process backend gives such an attempt a mount namespace of its own (the
child, between fork and exec: `unshare(CLONE_NEWNS)`, `/` made recursively private so
nothing propagates back to the host, then each bind), so the host's /opt/ml is never
touched beyond an empty mount point. That needs CAP_SYS_ADMIN: without it, or where the
kernel refuses, `Binder.check` says why once and the attempt runs without the binds
(its per-job paths still work). No shell and no helper binary is involved; libc is
called through ctypes, resolved in the parent so the child only makes system calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

Bind = tuple[Path, str]  # (host directory, path inside the namespace)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _check_call(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def enter(libc: ctypes.CDLL, binds: Sequence[tuple[bytes, bytes]]) -> None:
    """In the child: a private mount namespace with `binds` (source, target) mounted."""
    _check_call(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check_call(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None),
                "mount(/, MS_REC|MS_PRIVATE)")
    for source, target in binds:
        _check_call(libc.mount(source, target, None, MS_BIND | MS_REC, None),
                    f"bind {source.decode()} at {target.decode()}")


class Binder:
    """Whether this server may bind, decided once (a probe child), and the preexec hook
    that does it for one attempt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verdict: str | None = None  # "" when binds work, else why not
        self._libc: ctypes.CDLL | None = None

    def check(self, targets: Sequence[str]) -> str:
        """'' when attempts can get binds at `targets` (created if missing), else the
        reason they cannot."""
        with self._lock:
            if self._verdict is None:
                self._verdict = self._probe()
            if self._verdict:
                return self._verdict
            for target in targets:
                try:
                    Path(target).mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    return f"cannot create the mount point {target}: {error.strerror}"
            return ""

    def _probe(self) -> str:
        if not sys.platform.startswith("linux"):
            return "mount namespaces need Linux"
        if os.geteuid() != 0:
            return "kobako is not running as root (binding needs CAP_SYS_ADMIN)"
        try:
            libc = _libc()
            libc.unshare.argtypes = [ctypes.c_int]
            libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                   ctypes.c_ulong, ctypes.c_void_p]
        except (OSError, AttributeError) as error:
            return f"libc has no unshare/mount: {error}"

        def probe() -> None:
            try:
                enter(libc, [])
            except OSError as error:
                os._exit(error.errno or 1)  # the child's exit code carries the errno

        try:
            done = subprocess.run([sys.executable, "-c", ""], preexec_fn=probe,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as error:
            return f"the namespace probe failed: {error}"
        if done.returncode != 0:
            return f"unshare(CLONE_NEWNS) failed: {os.strerror(done.returncode)}"
        self._libc = libc
        return ""

    def hook(self, binds: Sequence[Bind]) -> Callable[[], None]:
        """A preexec_fn entering the namespace (call only after `check` said '')."""
        libc = self._libc
        assert libc is not None
        encoded = [(os.fsencode(source), os.fsencode(target)) for source, target in binds]
        return lambda: enter(libc, encoded)
