#!/usr/bin/env python3
"""What one small S3 request costs a real `kobako serve`, counted instead of timed.

    python bench/s3_count.py put|get [--requests N] [--lines]

Starts `python -m kobako serve` (the one on PYTHONPATH: point it at a checkout to compare
two versions) under valgrind's callgrind with instrumentation off, warms it up with one
keep-alive client, switches instrumentation on (`callgrind_control -i on`) for N signed
4 KiB PutObject (or GetObject) requests and prints the instructions executed per request:
all of the server's code, C included, repeatable to within about 1% whatever else the
machine is doing, where wall-clock figures on this VM swing by 20-50% from one minute to
the next. `--lines` runs the server without valgrind and counts the Python lines each
function executes per request instead (`sys.settrace`, switched on and off by signals):
where in the Python the work is. How the "Small PUT, session 4" figures in
bench/README.md were taken.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import s3_bench as bench  # the benchmark's signer and ports

# Run as the server process with --lines: traces Python lines per function between
# SIGUSR1 and SIGUSR2, then writes the counts to $KOBAKO_COUNT_OUT.
_LINE_COUNTER = r'''
import collections, os, signal, sys, threading
counts = collections.Counter()
tracing = [False]
def local(frame, event, arg):
    if tracing[0] and event == "line":
        code = frame.f_code
        name = code.co_filename.split("site-packages/")[-1].split("/src/")[-1]
        if name == "<string>":  # a dataclass's generated __init__: name its class
            name = "<" + type(frame.f_locals.get("self")).__name__ + ">"
        counts[name + ":" + code.co_name] += 1
    return local
def start(frame, event, arg):
    return local if tracing[0] else None
def on(*_):
    tracing[0] = True
def off(*_):
    tracing[0] = False
    with open(os.environ["KOBAKO_COUNT_OUT"], "w") as out:
        out.writelines(f"{count} {where}\n" for where, count in counts.items())
signal.signal(signal.SIGUSR1, on)
signal.signal(signal.SIGUSR2, off)
sys.settrace(start)
threading.settrace(start)
from kobako.cli import main
sys.exit(main(sys.argv[1:]))
'''


def connect(port: int) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 300  # valgrind starts a server slowly
    while True:
        try:
            connection = http.client.HTTPConnection(bench.HOST, port, timeout=120)
            connection.connect()
            return connection
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("op", choices=["put", "get"])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--lines", action="store_true",
                        help="count Python lines per function instead of instructions")
    args = parser.parse_args()
    if not args.lines and shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt install valgrind)")
    workdir = Path(tempfile.mkdtemp(prefix="kobako-count-"))
    port = bench.free_port()
    serve = ["serve", "--port", str(port), "--data-dir", str(workdir / "data")]
    env = dict(os.environ, KOBAKO_COUNT_OUT=str(workdir / "lines.txt"))
    if args.lines:
        command = [sys.executable, "-c", _LINE_COUNTER, *serve]
    else:
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={workdir / 'callgrind.out'}",
                   os.path.realpath(sys.executable), "-m", "kobako", *serve]
    with open(workdir / "server.log", "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    signer = bench.Signer()
    host = f"{bench.HOST}:{port}"
    body = os.urandom(4096)
    connection = connect(port)

    def request(method: str, path: str) -> None:
        headers = signer.headers(method, path, "", host)
        payload = body if method == "PUT" and path.count("/") > 1 else b""
        if method == "PUT":
            headers["Content-Length"] = str(len(payload))
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{method} {path}: {response.status}")

    try:
        request("PUT", "/bench-count")
        for i in range(60):
            request("PUT", f"/bench-count/k-{i}")
        time.sleep(8)  # the services built after start-up are up; the client reconnects
        connection.close()
        connection = connect(port)
        method = args.op.upper()
        for i in range(30):
            request(method, f"/bench-count/k-{i}")
        if args.lines:
            server.send_signal(signal.SIGUSR1)
        else:
            subprocess.run(["callgrind_control", "-i", "on", str(server.pid)],
                           check=True, capture_output=True)
        for i in range(args.requests):
            key = 1000 + i if args.op == "put" else i % 60  # PUT: new keys; GET: existing
            request(method, f"/bench-count/k-{key}")
        if args.lines:
            server.send_signal(signal.SIGUSR2)
            time.sleep(0.5)
        else:
            subprocess.run(["callgrind_control", "-i", "off", str(server.pid)],
                           check=True, capture_output=True)
    finally:
        connection.close()
        server.terminate()
        server.wait(timeout=120)
        shutil.rmtree(workdir / "data", ignore_errors=True)
    n = args.requests
    if args.lines:
        counts = [(int(count), where) for count, where in
                  (line.split(" ", 1) for line in (workdir / "lines.txt").read_text()
                   .splitlines())]
        print(f"{args.op}: {sum(c for c, _ in counts) / n:,.0f} Python lines per request")
        for count, where in sorted(counts, reverse=True)[:40]:
            print(f"  {count / n:7.1f}  {where.strip()}")
    else:
        collected = [line for line in (workdir / "server.log").read_text().splitlines()
                     if "Collected" in line]
        total = int(collected[-1].split()[-1])
        print(f"{args.op}: {total / n:,.0f} instructions per request "
              f"(callgrind_annotate {workdir / 'callgrind.out'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
