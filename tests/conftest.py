"""Test fixtures: a real `kobako serve` process on a free port, and real clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running kobako server process."""

    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str, **kwargs: Any) -> Any:
        config = kwargs.pop("config", None) or BotoConfig(retries={"max_attempts": 1})
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=kwargs.pop("region_name", "us-east-1"),
            aws_access_key_id=kwargs.pop("aws_access_key_id", "test"),
            aws_secret_access_key=kwargs.pop("aws_secret_access_key", "test"),
            config=config,
            **kwargs,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no flushing."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(data_dir: Path, port: int | None = None, config: Path | None = None,
                 python: str | None = None, env: dict[str, str] | None = None) -> Server:
    """`python -m kobako serve` (this interpreter unless `python` names another, with
    `env` instead of this process's environment) on a free port, once it answers."""
    port = port or free_port()
    log_path = data_dir.parent / f"server-{port}-{time.monotonic_ns()}.log"
    cmd = [python or sys.executable, "-m", "kobako", "serve", "--port", str(port),
           "--data-dir", str(data_dir)]
    if config is not None:
        cmd += ["--config", str(config)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(env if env is not None else os.environ))
    server = Server(port, data_dir, process, log_path, config)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kobako exited early:\n{server.log()}")
        if "listening on" not in server.log():  # not ours yet, whoever holds the port
            time.sleep(0.05)
            continue
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as probe:
                # Polling a port nobody listens on yet can connect the socket to itself
                # (TCP simultaneous open when the ephemeral source port equals `port`).
                if probe.getsockname() != probe.getpeername():
                    return server
            time.sleep(0.05)
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"kobako did not start:\n{server.log()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("kobako") / "data")
    yield running
    running.stop()
    assert " -> 500 " not in running.log(), "a request was answered with HTTP 500"


@pytest.fixture
def s3(server: Server) -> Any:
    return server.client("s3")


@pytest.fixture
def sfn(server: Server) -> Any:
    """A Step Functions client (test_sfn_express.py overrides it for sync- hosts)."""
    return server.client("stepfunctions")


_counter = iter(range(1_000_000))


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"test-bucket-{os.getpid()}-{next(_counter)}"
    s3.create_bucket(Bucket=name)
    return name


TWO_ACCOUNTS = """
[[users]]
access_key_id = "AKIAOWNER"
secret_access_key = "owner-secret"
display_name = "owner"
account_id = "111111111111"

[[users]]
access_key_id = "AKIAOTHER"
secret_access_key = "other-secret"
display_name = "other"
account_id = "222222222222"
"""


@pytest.fixture(scope="module")
def two_accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with two users in two accounts (AKIAOWNER / AKIAOTHER), per test module."""
    root = tmp_path_factory.mktemp("two-accounts")
    config = root / "kobako.toml"
    config.write_text(TWO_ACCOUNTS)
    running = start_server(root / "data", config=config)
    yield running
    running.stop()
    assert " -> 500 " not in running.log()
