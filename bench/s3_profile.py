#!/usr/bin/env python3
"""One kobako server, one small-object workload, and where its event loop spends the time.

    python bench/s3_profile.py put|get|list [--seconds S] [--clients C] [--py-spy FILE]
                               [--stacks]

Starts `python -m kobako serve` (the one on PYTHONPATH: point it at a checkout to compare
two versions, alternating runs), fills the buckets as s3_bench.py does, runs the workload
and prints requests/s and the server's CPU per request. `--py-spy FILE` records the
server with py-spy (raw format, all threads) meanwhile; `--stacks` samples the event-loop
thread's state and, when it sleeps uninterruptibly, its kernel stack
(/proc/PID/task/PID/stack, root only): how the "Small PUT, session 3" figures in
bench/README.md were taken.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import s3_bench as bench  # the benchmark's servers and load generator


def sample_loop_thread(pid: int, until: float) -> tuple[collections.Counter[str],
                                                        collections.Counter[str]]:
    """States of the server's main thread, and its kernel stacks while in D state."""
    states: collections.Counter[str] = collections.Counter()
    stacks: collections.Counter[str] = collections.Counter()
    task = Path(f"/proc/{pid}/task/{pid}")
    while time.monotonic() < until:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            where = "running" if state == "R" else (task / "wchan").read_text() or "?"
            states[f"{state} {where}"] += 1
            if state == "D":
                frames = (task / "stack").read_text().splitlines()[:8]
                stacks[" < ".join(f.split()[1].split("+")[0] for f in frames)] += 1
        except (OSError, IndexError):
            break
        time.sleep(0.0007)
    return states, stacks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("op", choices=["put", "get", "list"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--py-spy", type=Path, default=None, dest="py_spy")
    parser.add_argument("--stacks", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kobako-profile-"))
    pool = bench.WorkerPool(args.clients)
    server = bench.start_server("kobako", workdir, None)
    try:
        bench.setup_buckets(server, pool)
        spy = None
        if args.py_spy is not None:
            spy = subprocess.Popen(["py-spy", "record", "-r", "500", "-f", "raw", "--threads",
                                    "--nonblocking", "-o", str(args.py_spy), "-p",
                                    str(server.process.pid), "-d", str(int(args.seconds) + 1)])
            time.sleep(0.5)
        found: list[tuple[collections.Counter[str], collections.Counter[str]]] = []
        sampler = threading.Thread(target=lambda: found.append(sample_loop_thread(
            server.process.pid, time.monotonic() + args.seconds + 0.2)))
        if args.stacks:
            sampler.start()
        measured = bench.small_workload(pool, server, args.op, args.seconds)
        print(f"{args.op}: {measured.value:,.0f}/s, server {measured.server_cores:.2f} cores, "
              f"{measured.server_cores / max(measured.value, 1e-9) * 1e6:,.0f} us per request,"
              f" {measured.bad} bad")
        if args.stacks:
            sampler.join()
            states, stacks = found[0]
            total = sum(states.values()) or 1
            for what, count in states.most_common(8):
                print(f"  {100 * count / total:5.1f}%  {what}")
            for stack, count in stacks.most_common(5):
                print(f"  {count:5d}  {stack}")
        if spy is not None:
            spy.wait()
    finally:
        pool.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
