"""The issue's exact `aws` CLI sequence against a fresh kobako server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from awscli_helper import aws
from conftest import Server


def test_aws_cli_sequence(server: Server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = server.url
    aws(url, home, "s3", "mb", "s3://cli-bucket")
    assert "cli-bucket" in aws(url, home, "s3", "ls").stdout

    hello = tmp_path / "hello_world.txt"
    hello.write_text("Hello, world!\n")
    aws(url, home, "s3", "cp", str(hello), "s3://cli-bucket/hello_world.txt")

    tree = tmp_path / "tree"
    for rel in ("a.txt", "sub/b.txt", "sub/deeper/c.bin"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(os.urandom(1000) + rel.encode())
    aws(url, home, "s3", "sync", str(tree), "s3://cli-bucket/d")
    listing = aws(url, home, "s3", "ls", "--recursive", "s3://cli-bucket/d/").stdout
    for rel in ("a.txt", "sub/b.txt", "sub/deeper/c.bin"):
        assert f"d/{rel}" in listing
    # A second sync finds nothing to do.
    assert aws(url, home, "s3", "sync", str(tree), "s3://cli-bucket/d").stdout.strip() == ""

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(50 * 1024 * 1024))
    aws(url, home, "s3", "cp", str(big), "s3://cli-bucket/big.bin")
    back = tmp_path / "big.back"
    aws(url, home, "s3", "cp", "s3://cli-bucket/big.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
    head = aws(url, home, "s3api", "head-object", "--bucket", "cli-bucket", "--key",
               "big.bin").stdout
    assert '"ETag": "\\"' in head and '-' in head.split('"ETag"')[1].split(",")[0]

    hello_back = aws(url, home, "s3", "cp", "s3://cli-bucket/hello_world.txt", "-").stdout
    assert hello_back == "Hello, world!\n"

    aws(url, home, "s3", "rb", "s3://cli-bucket", "--force")
    assert "cli-bucket" not in aws(url, home, "s3", "ls").stdout


def test_aws_cli_errors_are_aws_shaped(server: Server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = aws(server.url, home, "s3api", "get-object", "--bucket", "no-such-bucket-x",
                 "--key", "k", str(tmp_path / "out"), check=False)
    assert result.returncode != 0
    assert "NoSuchBucket" in result.stderr


def test_sts_get_caller_identity(server: Server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = aws(server.url, home, "sts", "get-caller-identity").stdout
    assert '"Account": "000000000000"' in out
