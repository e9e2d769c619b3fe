#!/usr/bin/env python3
"""S3 benchmark: kobako and moto's server side by side, in one run, in alternating rounds.

    python bench/s3_bench.py [--rounds N] [--seconds S] [--clients C] [--large-mib M]
                             [--rss-gib G] [--only kobako|moto] [--no-fsync] [--inline-bytes N]
                             [--tmp-root DIR]

Both servers run on 127.0.0.1 for the whole run; every round runs all workloads on
kobako, then on moto, so machine noise hits both. The table gives medians over rounds
and the ratio kobako/moto. See bench/README.md for what each line measures.

The load generator is kept lean so that it is not the bottleneck on a small machine:
small-object workloads run in C worker processes, each with one keep-alive connection
spoken over a raw socket (`RawConnection`), signing with a cached SigV4 key and
UNSIGNED-PAYLOAD (checked against botocore's `S3SigV4Auth` at start). Client and server
CPU are both measured and printed, so a reader can see which side was saturated.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import http.client
import io
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ACCESS_KEY = "test"
SECRET_KEY = "test"
REGION = "us-east-1"
HOST = "127.0.0.1"
SMALL_SIZE = 4 * 1024
LIST_KEYS = 1000
SMALL_BUCKET = "bench-small"  # LIST_KEYS objects of SMALL_SIZE: the GET and LIST workloads
PUT_BUCKET = "bench-put"
LARGE_BUCKET = "bench-large"
MIB = 1024 * 1024
PATTERN_BLOCK = MIB  # large bodies repeat one random block of this size
RSS_INTERVAL_S = 0.025
CLK_TCK = os.sysconf("SC_CLK_TCK")
UNSIGNED = "UNSIGNED-PAYLOAD"


# ---------------------------------------------------------------------------- signing


class Signer:
    """SigV4 header signing for S3 with UNSIGNED-PAYLOAD, the signing key cached per day.

    Signs exactly host, x-amz-content-sha256 and x-amz-date: one SHA-256 and one HMAC
    per request. `check_signer` proves it agrees with botocore.
    """

    SIGNED = "host;x-amz-content-sha256;x-amz-date"

    def __init__(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
                 region: str = REGION) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self._day = ""
        self._key = b""
        self._second = -1
        self._amz_date = ""

    def _signing_key(self, day: str) -> bytes:
        if day != self._day:
            key = f"AWS4{self.secret_key}".encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day, self._key = day, key
        return self._key

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        return self._amz_date

    def headers(self, method: str, path: str, query: str, host: str,
                amz_date: str | None = None) -> dict[str, str]:
        """Headers for one request; `path` percent-encoded, `query` already canonical."""
        amz_date = amz_date or self.now()
        day = amz_date[:8]
        canonical = (f"{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{UNSIGNED}\n"
                     f"x-amz-date:{amz_date}\n\n{self.SIGNED}\n{UNSIGNED}")
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = (f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        return {
            "Host": host,
            "X-Amz-Date": amz_date,
            "X-Amz-Content-SHA256": UNSIGNED,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                             f"SignedHeaders={self.SIGNED}, Signature={signature}",
        }


def check_signer() -> None:
    """Fail fast if the lean signer disagrees with botocore's S3SigV4Auth."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials

    host = f"{HOST}:4566"
    cases = [("GET", "/bench-small", "list-type=2&max-keys=1000"),
             ("PUT", "/bench-put/w1/k-42", ""), ("GET", "/", "")]
    for method, path, query in cases:
        url = f"http://{host}{path}" + (f"?{query}" if query else "")
        request = AWSRequest(method=method, url=url, headers={"Host": host})
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
        amz_date = request.headers["X-Amz-Date"]
        ours = Signer().headers(method, path, query, host, amz_date)["Authorization"]
        if request.headers["Authorization"] != ours:
            raise SystemExit(f"signer disagrees with botocore for {method} {path}?{query}:\n"
                             f"  botocore {request.headers['Authorization']}\n  ours     {ours}")


# ---------------------------------------------------------------------------- raw HTTP


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client for small requests: about 2.5x less client CPU
    per request than `http.client` here (its header parsing goes through `email`).

    One request at a time; the response body framed by Content-Length or chunked.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def _recv(self, sock: socket.socket) -> bytes:
        data = sock.recv(256 * 1024)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def _read_exactly(self, sock: socket.socket, pieces: list[bytes], have: int, n: int) -> None:
        while have < n:
            data = self._recv(sock)
            pieces.append(data)
            have += len(data)

    def request(self, method: str, target: str, headers: dict[str, str],
                body: bytes = b"") -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection((HOST, self.port), timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        length = f"Content-Length: {len(body)}\r\n" if method in ("PUT", "POST") else ""
        sock.sendall(f"{method} {target} HTTP/1.1\r\n{lines}{length}\r\n".encode() + body)
        buffer = self.buffer
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += self._recv(sock)
        head = buffer[:end].lower()
        status = int(head[9:12])
        rest = buffer[end + 4:]
        start = head.find(b"\r\ncontent-length:")
        if start >= 0:
            stop = head.find(b"\r\n", start + 17)
            n = int(head[start + 17: stop if stop >= 0 else len(head)])
            pieces = [rest]
            self._read_exactly(sock, pieces, len(rest), n)
            rest = b"".join(pieces)
            data, self.buffer = rest[:n], rest[n:]
        elif b"\r\ntransfer-encoding: chunked" in head:
            data = self._chunked(sock, rest)
        elif method == "HEAD" or status in (204, 304):
            data, self.buffer = b"", rest
        else:  # no framing: the body runs to the end of the connection
            pieces = [rest]
            with contextlib.suppress(ConnectionError):
                while True:
                    pieces.append(self._recv(sock))
            data = b"".join(pieces)
            head += b"\r\nconnection: close"
        if b"\r\nconnection: close" in head:
            self.close()
        return status, data

    def _chunked(self, sock: socket.socket, rest: bytes) -> bytes:
        out: list[bytes] = []
        while True:
            while (eol := rest.find(b"\r\n")) < 0:
                rest += self._recv(sock)
            size = int(rest[:eol].split(b";")[0], 16)
            rest = rest[eol + 2:]
            if size == 0:
                while (end := rest.find(b"\r\n")) < 0:  # no trailers expected
                    rest += self._recv(sock)
                self.buffer = rest[end + 2:]
                return b"".join(out)
            pieces = [rest]
            self._read_exactly(sock, pieces, len(rest), size + 2)
            rest = b"".join(pieces)
            out.append(rest[:size])
            rest = rest[size + 2:]


# ---------------------------------------------------------------------------- bodies


class PatternFile(io.RawIOBase):
    """A seekable read-only file of `size` bytes repeating one random block (no big buffer)."""

    def __init__(self, size: int, block: bytes) -> None:
        self.size = size
        self._double = memoryview(block + block)
        self._block = len(block)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        want = min(len(out), self.size - self._pos)
        done = 0
        while done < want:
            start = (self._pos + done) % self._block
            n = min(want - done, self._block)
            out[done:done + n] = self._double[start:start + n]
            done += n
        self._pos += want
        return want

    def expected(self, offset: int, length: int) -> bytes:
        self.seek(offset)
        return self.read(length) or b""


class NullSink(io.RawIOBase):
    """A seekable writable file that keeps nothing but a byte count."""

    def __init__(self) -> None:
        self.written = 0
        self._pos = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = offset if whence == io.SEEK_SET else self._pos + offset
        return self._pos

    def write(self, data: Any) -> int:
        n = len(memoryview(data).cast("B"))
        self.written += n
        self._pos += n
        return n


# ---------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    start_s: float  # Popen to first answered (signed ListBuckets) request
    start_cpu_s: float = 0.0  # the server's CPU time (user + system) until that answer

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_s(self) -> float:
        """utime + stime of the server process, all threads."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_command(name: str, port: int, data_dir: Path, config: Path | None) -> list[str]:
    if name == "kobako":
        cmd = [sys.executable, "-m", "kobako", "serve", "--port", str(port),
               "--data-dir", str(data_dir)]
        return cmd + (["--config", str(config)] if config else [])
    return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]


BARE_APP = """
BODY = b"x" * 4096
HEADERS = [(b"content-length", b"4096"), (b"etag", b'"0123456789abcdef0123456789abcdef"')]


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
"""


def start_bare_uvicorn(workdir: Path) -> Server:
    """An ASGI app that does nothing but answer 4 KiB, run by uvicorn as kobako runs it:
    what the load generator can drive at most, so that it is seen not to be the limit."""
    (workdir / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    log_path = workdir / f"bare-{port}.log"
    cmd = [sys.executable, "-c", "import uvicorn; uvicorn.run('bare_app:app', host="
           f"'{HOST}', port={port}, log_level='warning', access_log=False, app_dir="
           f"{str(workdir)!r}, server_header=False)"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return Server("bare", port, process, log_path, 0.0)
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("the bare uvicorn app did not start")


def probe(port: int, signer: Signer) -> int:
    """One signed ListBuckets; returns the HTTP status (raises OSError if refused)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/", headers=signer.headers("GET", "/", "", f"{HOST}:{port}"))
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def start_server(name: str, workdir: Path, config: Path | None) -> Server:
    """Start a server; time from Popen to its first answered request."""
    port = free_port()
    data_dir = workdir / f"{name}-{port}"
    data_dir.mkdir(parents=True)
    log_path = workdir / f"{name}-{port}.log"
    signer = Signer()
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(server_command(name, port, data_dir, config), stdout=log,
                                   stderr=subprocess.STDOUT, cwd=data_dir)
    server = Server(name, port, process, log_path, 0.0)
    deadline = started + 60
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log_path.read_text(errors='replace')}")
        try:
            status = probe(port, signer)
        except OSError:
            time.sleep(0.005)
            continue
        server.start_s = time.perf_counter() - started
        server.start_cpu_s = server.cpu_s()
        if status != 200:
            server.stop()
            raise RuntimeError(f"{name}: ListBuckets answered {status}")
        return server
    server.stop()
    raise RuntimeError(f"{name} did not answer within 60 s")


class RssSampler(threading.Thread):
    """Samples VmRSS of every registered server every RSS_INTERVAL_S; peaks per phase."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.pids: dict[str, int] = {}
        self.phase = "idle"
        self.peaks: dict[tuple[str, str], int] = {}
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    @staticmethod
    def rss(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0

    def sample(self) -> None:
        with self._lock:
            for name, pid in self.pids.items():
                key = (name, self.phase)
                self.peaks[key] = max(self.peaks.get(key, 0), self.rss(pid))

    def set_phase(self, phase: str) -> None:
        self.sample()
        with self._lock:
            self.phase = phase
        self.sample()

    def peak(self, name: str, prefix: str) -> int:
        with self._lock:
            return max((v for (n, p), v in self.peaks.items()
                        if n == name and p.startswith(prefix)), default=0)

    def run(self) -> None:
        while not self._stop_event.wait(RSS_INTERVAL_S):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()


# ---------------------------------------------------------------------------- load workers


@dataclass
class Task:
    op: str  # "put" | "get" | "list" | "fill"
    port: int
    index: int
    clients: int
    start_at: float = 0.0  # time.monotonic(): the clock is shared by all processes
    end_at: float = 0.0


@dataclass
class Result:
    ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    invalid: int = 0  # 2xx with a wrong body (size, key count)
    errors: int = 0  # connection errors
    cpu_s: float = 0.0
    samples: list[str] = field(default_factory=list)  # first few failures, for the report

    def add(self, other: Result) -> None:
        self.ok += other.ok
        self.statuses.update(other.statuses)
        self.invalid += other.invalid
        self.errors += other.errors
        self.cpu_s += other.cpu_s
        self.samples.extend(other.samples[: max(0, 5 - len(self.samples))])

    @property
    def bad(self) -> int:
        return sum(n for s, n in self.statuses.items() if not 200 <= s < 300) \
            + self.invalid + self.errors


def _run_task(task: Task, signer: Signer, conns: dict[int, RawConnection],
              body: bytes) -> Result:
    host = f"{HOST}:{task.port}"
    conn = conns.setdefault(task.port, RawConnection(task.port))
    conn.close()  # servers drop idle keep-alive connections (uvicorn after 5 s): start fresh
    result = Result()
    if task.op == "put":
        method, query, size = "PUT", "", -1
        paths: Iterator[str] = (f"/{PUT_BUCKET}/w{task.index}/k-{i}" for i in range(10**9))
    elif task.op == "fill":
        method, query, size = "PUT", "", -1
        paths = iter([f"/{SMALL_BUCKET}/obj-{i:05d}"
                      for i in range(task.index, LIST_KEYS, task.clients)])
    elif task.op == "get":
        method, query, size = "GET", "", SMALL_SIZE
        mine = [f"/{SMALL_BUCKET}/obj-{i:05d}" for i in range(task.index, LIST_KEYS, task.clients)]
        paths = (mine[i % len(mine)] for i in range(10**9))
    else:
        method, query, size = "GET", "list-type=2&max-keys=1000", LIST_KEYS
        paths = (f"/{SMALL_BUCKET}" for _ in range(10**9))
    payload = body if method == "PUT" else b""
    timed = task.op != "fill"
    while timed and time.monotonic() < task.start_at:
        time.sleep(0.001)
    cpu0 = time.process_time()
    for path in paths:
        if timed and time.monotonic() >= task.end_at:
            break
        url = f"{path}?{query}" if query else path
        try:
            status, data = conn.request(method, url, signer.headers(method, path, query, host),
                                        payload)
            if timed and time.monotonic() > task.end_at:
                break  # finished after the window: not counted, for either server
        except (OSError, ValueError) as error:
            result.errors += 1
            if len(result.samples) < 5:
                result.samples.append(f"{method} {url}: {error!r}")
            conn.close()
            continue
        result.statuses[status] += 1
        if not 200 <= status < 300:
            if len(result.samples) < 5:
                result.samples.append(f"{method} {url} -> {status}: {data[:300]!r}")
            continue
        if size >= 0 and (len(data) if task.op == "get" else data.count(b"<Key>")) != size:
            result.invalid += 1
            if len(result.samples) < 5:
                result.samples.append(f"{method} {url} -> {status}: unexpected body "
                                      f"({len(data)} bytes)")
            continue
        result.ok += 1
    result.cpu_s = time.process_time() - cpu0
    return result


def _worker_main(pipe: Connection, seed: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signer = Signer()
    conns: dict[int, RawConnection] = {}
    body = hashlib.shake_256(seed.to_bytes(8, "big")).digest(SMALL_SIZE)
    while True:
        task = pipe.recv()
        if task is None:
            break
        pipe.send(_run_task(task, signer, conns, body))
    for conn in conns.values():
        conn.close()


class WorkerPool:
    """C persistent worker processes, each given exactly one task per run."""

    def __init__(self, clients: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for index in range(clients):
            ours, theirs = ctx.Pipe()
            process = ctx.Process(target=_worker_main, args=(theirs, index), daemon=True)
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)

    def start(self, op: str, port: int, seconds: float) -> tuple[float, float]:
        """Hand every worker the task; returns the (start_at, end_at) of its timed window."""
        start_at = time.monotonic() + 0.2
        for index, pipe in enumerate(self.pipes):
            pipe.send(Task(op, port, index, len(self.pipes), start_at, start_at + seconds))
        return start_at, start_at + seconds

    def collect(self) -> Result:
        total = Result()
        for pipe in self.pipes:
            total.add(pipe.recv())
        return total

    def run(self, op: str, port: int, seconds: float) -> Result:
        self.start(op, port, seconds)
        return self.collect()

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()


# ---------------------------------------------------------------------------- measurements


@dataclass
class Measure:
    value: float
    client_cores: float = 0.0
    server_cores: float = 0.0
    bad: int = 0
    notes: list[str] = field(default_factory=list)  # what went wrong, for the summary


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def small_workload(pool: WorkerPool, server: Server, op: str, seconds: float) -> Measure:
    """All workers run `op` for `seconds`; server CPU is read at the window's two ends."""
    start_at, end_at = pool.start(op, server.port, seconds)
    _sleep_until(start_at)
    cpu0 = server.cpu_s()
    _sleep_until(end_at)
    server_cpu = server.cpu_s() - cpu0
    result = pool.collect()
    notes: list[str] = []
    if result.bad:
        loud = any(s >= 500 for s in result.statuses) and server.name == "kobako"
        banner = "!!! BUG: kobako answered HTTP 5xx" if loud else f"{server.name}: non-2xx"
        notes.append(f"{banner} in {op}: statuses {dict(result.statuses)}, invalid "
                      f"{result.invalid}, connection errors {result.errors}")
        notes.extend(f"  {sample}" for sample in result.samples)
        print("\n".join(f"  {note}" for note in notes), flush=True)
    return Measure(result.ok / seconds, result.cpu_s / seconds, server_cpu / seconds, result.bad,
                   notes)


def _failure(server: Server, text: str) -> list[str]:
    """Print a failed large transfer loudly; HTTP 5xx from kobako is a bug."""
    banner = "!!! BUG" if server.name == "kobako" and " -> 5" in text else "!!!"
    note = f"{banner} {server.name}: {text}"
    print(f"  {note}", flush=True)
    return [note]


def raw_put(server: Server, key: str, size: int, block: bytes) -> Measure:
    """One single-request PUT (UNSIGNED-PAYLOAD, Content-Length) streamed from a pattern."""
    signer = Signer()
    path = f"/{LARGE_BUCKET}/{key}"
    headers = signer.headers("PUT", path, "", f"{HOST}:{server.port}")
    headers["Content-Length"] = str(size)
    conn = http.client.HTTPConnection(HOST, server.port, timeout=300, blocksize=MIB)
    notes: list[str] = []
    cpu0, scpu0, t0 = time.process_time(), server.cpu_s(), time.perf_counter()
    try:
        conn.request("PUT", path, PatternFile(size, block), headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            notes = _failure(server, f"raw PUT -> {response.status}: {data[:300]!r}")
    except (OSError, http.client.HTTPException) as error:
        notes = _failure(server, f"raw PUT failed: {error!r}")
    finally:
        conn.close()
    elapsed = time.perf_counter() - t0
    return Measure(size / elapsed / 1e6, (time.process_time() - cpu0) / elapsed,
                   (server.cpu_s() - scpu0) / elapsed, len(notes), notes)


def raw_get(server: Server, key: str, size: int, check: PatternFile | None = None) -> Measure:
    """One GET on one connection read into a reused 4 MiB buffer; `check` compares the
    first buffer's bytes with what was uploaded."""
    signer = Signer()
    path = f"/{LARGE_BUCKET}/{key}"
    conn = http.client.HTTPConnection(HOST, server.port, timeout=300)
    buffer = bytearray(4 * MIB)
    view = memoryview(buffer)
    total = 0
    notes: list[str] = []
    cpu0, scpu0, t0 = time.process_time(), server.cpu_s(), time.perf_counter()
    try:
        conn.request("GET", path, headers=signer.headers("GET", path, "", f"{HOST}:{server.port}"))
        response = conn.getresponse()
        while n := response.readinto(buffer):
            if check is not None and total == 0 and view[:n] != check.expected(0, n):
                notes = _failure(server, "raw GET: CONTENT MISMATCH")
            total += n
        if response.status != 200 or total != size:
            notes = _failure(server, f"raw GET -> {response.status}, {total} of {size} bytes")
    except (OSError, http.client.HTTPException) as error:
        notes = _failure(server, f"raw GET failed after {total} bytes: {error!r}")
    finally:
        conn.close()
    elapsed = time.perf_counter() - t0
    return Measure(size / elapsed / 1e6, (time.process_time() - cpu0) / elapsed,
                   (server.cpu_s() - scpu0) / elapsed, len(notes), notes)


def boto_client(server: Server) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=server.url, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        config=Config(retries={"max_attempts": 1}))


def boto_transfer(server: Server, client: Any, direction: str, key: str, size: int,
                  block: bytes) -> Measure:
    """boto3's managed transfer with its default TransferConfig (8 MiB parts, 10 threads)."""
    cpu0, scpu0, t0 = time.process_time(), server.cpu_s(), time.perf_counter()
    notes: list[str] = []
    try:
        if direction == "put":
            client.upload_fileobj(PatternFile(size, block), LARGE_BUCKET, key)
        else:
            sink = NullSink()
            client.download_fileobj(LARGE_BUCKET, key, sink)
            if sink.written != size:
                raise RuntimeError(f"downloaded {sink.written} of {size} bytes")
    except Exception as error:
        notes = _failure(server, f"boto3 {direction} failed: {error!r}")
    elapsed = time.perf_counter() - t0
    return Measure(size / elapsed / 1e6, (time.process_time() - cpu0) / elapsed,
                   (server.cpu_s() - scpu0) / elapsed, len(notes), notes)


# ---------------------------------------------------------------------------- the run


@dataclass
class Row:
    label: str
    unit: str
    values: dict[str, list[float]] = field(default_factory=dict)
    detail: dict[str, list[Measure]] = field(default_factory=dict)

    def add(self, name: str, measure: Measure | float) -> None:
        m = measure if isinstance(measure, Measure) else Measure(measure)
        self.values.setdefault(name, []).append(m.value)
        self.detail.setdefault(name, []).append(m)

    def median(self, name: str) -> float | None:
        values = self.values.get(name)
        return statistics.median(values) if values else None


class Report:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.rows: dict[str, Row] = {}

    def row(self, label: str, unit: str) -> Row:
        return self.rows.setdefault(label, Row(label, unit))

    def print_table(self) -> None:
        width = max(len(f"{r.label} ({r.unit})") for r in self.rows.values()) + 2
        head = f"{'workload':<{width}}" + "".join(f"{n:>12}" for n in ("kobako", "moto")) \
            + f"{'kobako/moto':>14}"
        print("\n" + head + "\n" + "-" * len(head))
        for row in self.rows.values():
            k, m = row.median("kobako"), row.median("moto")
            ratio = f"{k / m:.2f}x" if k is not None and m else "-"
            cells = "".join(f"{_fmt(v):>12}" for v in (k, m))
            print(f"{f'{row.label} ({row.unit})':<{width}}{cells}{ratio:>14}")
        print("(medians over rounds; ratio kobako/moto: > 1 is better for req/s and MB/s, "
              "< 1 for s and MB)")

    def print_failures(self) -> None:
        notes = [f"{row.label}, {name}: {note}" for row in self.rows.values()
                 for name, measures in row.detail.items() for m in measures for note in m.notes]
        bad = {name: sum(m.bad for row in self.rows.values() for m in row.detail.get(name, []))
               for name in self.names}
        print(f"\nfailed requests: {', '.join(f'{n} {b}' for n, b in bad.items())}")
        for note in notes[:20]:
            print(f"  {note}")

    def print_cpu(self) -> None:
        print("\nCPU while measuring (median cores; 2 cores on this machine) and per request:")
        print(f"{'workload':<30}{'server':>8}{'client':>9}{'server':>9}{'client us':>11}"
              f"{'server us':>11}{'bad':>6}")
        for row in self.rows.values():
            for name in self.names:
                measures = row.detail.get(name, [])
                if not measures or not any(m.server_cores for m in measures):
                    continue
                client = statistics.median(m.client_cores for m in measures)
                srv = statistics.median(m.server_cores for m in measures)
                rate = statistics.median(m.value for m in measures)
                per = f"{client / rate * 1e6:>11.0f}{srv / rate * 1e6:>11.0f}" \
                    if row.unit == "req/s" and rate else " " * 22
                bad = sum(m.bad for m in measures)
                print(f"{row.label:<30}{name:>8}{client:>9.2f}{srv:>9.2f}{per}{bad:>6}")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def large_round(server: Server, client: Any, key: str, mib: int, block: bytes,
                verify: bool) -> list[tuple[str, str, Measure]]:
    """The large-object workloads, in order: raw PUT, raw GET, boto3 PUT, boto3 GET."""
    size = mib * MIB
    out = [("PUT", f"PUT {mib} MiB raw, 1 stream", raw_put(server, key, size, block))]
    check = PatternFile(size, block) if verify else None
    out.append(("GET", f"GET {mib} MiB raw, 1 stream", raw_get(server, key, size, check)))
    out.append(("boto3 PUT", f"PUT {mib} MiB boto3 multipart",
                boto_transfer(server, client, "put", key, size, block)))
    out.append(("boto3 GET", f"GET {mib} MiB boto3 ranged",
                boto_transfer(server, client, "get", key, size, block)))
    return out


def setup_buckets(server: Server, pool: WorkerPool) -> None:
    signer = Signer()
    host = f"{HOST}:{server.port}"
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        for bucket in (SMALL_BUCKET, PUT_BUCKET, LARGE_BUCKET):
            conn.request("PUT", f"/{bucket}", b"", signer.headers("PUT", f"/{bucket}", "", host))
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"{server.name}: CreateBucket {bucket} -> {response.status}: "
                                   f"{data[:300]!r}")
    finally:
        conn.close()
    filled = pool.run("fill", server.port, 0)
    if filled.ok != LIST_KEYS:
        raise RuntimeError(f"{server.name}: filling {SMALL_BUCKET} failed: {filled.samples}")


def run_rss_gib(server: Server, sampler: RssSampler, gib: float, block: bytes) -> None:
    """Max kobako RSS while a `gib` GiB object is uploaded and downloaded, raw and via boto3."""
    size = int(gib * 1024 * MIB)
    client = boto_client(server)
    print(f"\nRSS with a {gib:g} GiB object on {server.name} "
          f"(RSS before: {RssSampler.rss(server.process.pid) / 1e6:.0f} MB):")
    steps: list[tuple[str, Callable[[], Measure]]] = [
        ("raw PUT, 1 stream", lambda: raw_put(server, "huge", size, block)),
        ("raw GET, 1 stream", lambda: raw_get(server, "huge", size, PatternFile(size, block))),
        ("boto3 upload_fileobj", lambda: boto_transfer(server, client, "put", "huge", size,
                                                        block)),
        ("boto3 download_fileobj", lambda: boto_transfer(server, client, "get", "huge", size,
                                                          block)),
    ]
    for label, step in steps:
        sampler.set_phase(f"gib:{label}")
        measure = step()
        sampler.set_phase("idle")
        print(f"  {label:<24} {measure.value:8.0f} MB/s   peak server RSS "
              f"{sampler.peak(server.name, f'gib:{label}') / 1e6:6.0f} MB")
    print(f"  max server RSS during the {gib:g} GiB upload+download: "
          f"{sampler.peak(server.name, 'gib:') / 1e6:.0f} MB")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def file_create_us(directory: Path, count: int = 200) -> float:
    """Wall time to create, write 4 KiB to and close one file: what a PUT costs the disk."""
    probe_dir = directory / "file-probe"
    probe_dir.mkdir()
    started = time.perf_counter()
    for i in range(count):
        (probe_dir / f"f{i}").write_bytes(b"x" * SMALL_SIZE)
    elapsed = time.perf_counter() - started
    shutil.rmtree(probe_dir)
    return elapsed / count * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="seconds per small-object workload per round (default 3)")
    parser.add_argument("--clients", type=int, default=4,
                        help="concurrent client processes, one keep-alive connection each")
    parser.add_argument("--large-mib", type=int, default=256,
                        help="large object size in MiB (0 skips; default 256)")
    parser.add_argument("--rss-gib", type=float, default=0,
                        help="also measure kobako RSS with an object this big (default: skip)")
    parser.add_argument("--only", choices=["kobako", "moto"], help="run one server only")
    parser.add_argument("--no-fsync", action="store_true",
                        help="run kobako with fsync = false (default: kobako's default, fsync)")
    parser.add_argument("--inline-bytes", type=int, default=None,
                        help="run kobako with this inline_bytes (PutObject bodies kept in "
                             "SQLite up to this size; 0: every body a file; default: kobako's)")
    parser.add_argument("--tmp-root", type=Path, default=None,
                        help="where the servers' data dirs go (default: the system temp dir; "
                             "e.g. /dev/shm to take the disk out of the picture)")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip the load generator's ceiling (GETs from a bare uvicorn app)")
    args = parser.parse_args(argv)
    names = [args.only] if args.only else ["kobako", "moto"]

    check_signer()
    workdir = Path(tempfile.mkdtemp(prefix="kobako-bench-", dir=args.tmp_root))
    config: Path | None = None
    settings = (["fsync = false"] if args.no_fsync else []) + (
        [f"inline_bytes = {args.inline_bytes}"] if args.inline_bytes is not None else [])
    if settings:
        config = workdir / "kobako.toml"
        config.write_text("".join(f"{line}\n" for line in settings))
    block = os.urandom(PATTERN_BLOCK)
    large = args.large_mib * MIB
    pool = WorkerPool(args.clients)  # fork before any thread starts
    sampler = RssSampler()
    sampler.start()
    servers: dict[str, Server] = {}
    floor: Server | None = None
    report = Report(names)
    wall0 = time.perf_counter()
    try:
        print(f"kobako vs moto: {args.rounds} rounds, {args.seconds:g} s per small workload, "
              f"{args.clients} clients, {args.large_mib} MiB large object, "
              f"fsync {'off' if args.no_fsync else 'on'}"
              + (f", inline_bytes {args.inline_bytes}" if args.inline_bytes is not None else ""),
              flush=True)
        print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {sys.version.split()[0]}, "
              f"load average {os.getloadavg()[0]:.2f}; creating a 4 KiB file in {workdir.parent} "
              f"costs {file_create_us(workdir):.0f} us", flush=True)
        startup = report.row("start to first answered request", "s")
        startup_cpu = report.row("server CPU time until then", "s")
        for _ in range(args.rounds):
            for name in names:
                throwaway = start_server(name, workdir, config)
                startup.add(name, throwaway.start_s)
                startup_cpu.add(name, throwaway.start_cpu_s)
                throwaway.stop()
        for name in names:
            servers[name] = start_server(name, workdir, config)
            startup.add(name, servers[name].start_s)
            startup_cpu.add(name, servers[name].start_cpu_s)
            sampler.pids[name] = servers[name].process.pid
        time.sleep(0.3)
        sampler.sample()
        for name, server in servers.items():
            report.row("server RSS after start", "MB").add(
                name, RssSampler.rss(server.process.pid) / 1e6)
            setup_buckets(server, pool)
        clients = {name: boto_client(server) for name, server in servers.items()}
        floor = None if args.no_ceiling else start_bare_uvicorn(workdir)
        floor_gets: list[Measure] = []

        for round_number in range(1, args.rounds + 1):
            for name, server in servers.items():
                line = [f"round {round_number} {name:>6}:"]
                sampler.set_phase(f"small:{round_number}")
                for op, label in (("put", "PUT 4 KiB"), ("get", "GET 4 KiB"),
                                  ("list", "LIST 1000 keys")):
                    measure = small_workload(pool, server, op, args.seconds)
                    report.row(f"{label}, {args.clients} clients", "req/s").add(name, measure)
                    line.append(f"{op} {measure.value:.0f}/s")
                if large:
                    sampler.set_phase(f"large:{round_number}")
                    for short, label, measure in large_round(
                            server, clients[name], f"large-{round_number}", args.large_mib,
                            block, verify=round_number == 1):
                        report.row(label, "MB/s").add(name, measure)
                        line.append(f"{short} {measure.value:.0f} MB/s")
                sampler.set_phase("idle")
                print(" ".join(line), flush=True)
            if floor is not None:
                measure = small_workload(pool, floor, "get", args.seconds)
                floor_gets.append(measure)
                print(f"round {round_number}  bare uvicorn: get {measure.value:.0f}/s", flush=True)
        for name in names:
            report.row("server RSS peak, small objects (round 1)", "MB").add(
                name, sampler.peak(name, "small:1") / 1e6)
            report.row("server RSS peak, whole run", "MB").add(name, sampler.peak(name, "") / 1e6)

        report.print_table()
        if floor_gets:
            rate = statistics.median(m.value for m in floor_gets)
            client = statistics.median(m.client_cores for m in floor_gets)
            print(f"load generator ceiling: a bare uvicorn app answering every GET with 4 KiB "
                  f"got {rate:,.0f} req/s from the same {args.clients} clients "
                  f"(client {client:.2f} cores)")
        report.print_cpu()
        report.print_failures()

        if args.rss_gib and "kobako" in servers:
            run_rss_gib(servers["kobako"], sampler, args.rss_gib, block)
        elif args.rss_gib:
            print("\n--rss-gib is measured on kobako only: skipped")
    finally:
        pool.close()
        sampler.stop()
        for server in [*servers.values(), *([floor] if floor else [])]:
            server.stop()
        for log in sorted(workdir.glob("kobako-*.log")):
            errors = [line for line in log.read_text(errors="replace").splitlines()
                      if " -> 500 " in line]
            if errors:
                print(f"\n!!! BUG: kobako answered HTTP 500 {len(errors)} times ({log.name}):")
                print("\n".join(errors[:5]))
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal wall time {time.perf_counter() - wall0:.0f} s, "
          f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
