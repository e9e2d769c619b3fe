"""A real container engine for tests: Podman's Docker Engine API on a socket in a temp
dir, with a busybox image built by `podman import` (no registry needed).

`podman_engine` installs Podman when it is missing (as root, with apt-get), builds the
image, starts `podman system service` and yields its host and a docker-py client; it
skips the test only when the engine truly cannot start here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
TOOLS = ("sh", "echo", "cat", "ls", "sleep", "env", "id", "head", "tr", "grep", "touch",
         "test", "true", "stat", "mkdir", "nc")


def have_podman() -> str | None:
    """None if podman is usable, else why not; installs it (as root) when missing."""
    if shutil.which("podman") and shutil.which("busybox"):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "podman is not installed and this user cannot install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True,
                       timeout=300)
        subprocess.run(["apt-get", "install", "-y", "podman", "runc", "fuse-overlayfs",
                        "busybox-static"], env=env, check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as error:
        return f"installing podman failed: {error}"
    return None if shutil.which("podman") and shutil.which("busybox") else \
        "podman or busybox still missing after apt-get install"


def build_image(root: Path, env: dict[str, str], image: str, tools: Iterable[str] = TOOLS,
                files: dict[str, str] | None = None) -> str | None:
    """A busybox image made with `podman import`; `files` (rootfs path -> text) are
    added as executables. None, or why the import failed."""
    rootfs = root / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "kobako-test-image").write_text("busybox\n")
    shutil.copy(str(shutil.which("busybox")), rootfs / "bin" / "busybox")
    for tool in dict.fromkeys(tools):  # each once, whoever named it twice
        (rootfs / "bin" / tool).symlink_to("busybox")
    for name, text in (files or {}).items():
        path = rootfs / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(root / "rootfs.tar"), "."], check=True)
    imported = subprocess.run(["podman", "import", str(root / "rootfs.tar"), image], env=env,
                              capture_output=True, text=True)
    return None if imported.returncode == 0 else \
        f"podman cannot import an image here: {imported.stderr.strip()}"


def connect(host: str, service: subprocess.Popen[bytes], timeout: float = 20) -> Any:
    """A docker-py client once the service's socket accepts; None if it never does."""
    path = host.removeprefix("unix://")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and service.poll() is None:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
            except OSError:
                time.sleep(0.1)
                continue
        return docker.DockerClient(base_url=host, version="auto", timeout=30)
    return None


@dataclass
class Podman:
    host: str  # unix:///.../podman.sock
    client: Any  # docker.DockerClient
    env: dict[str, str]  # CONTAINERS_CONF and friends, for `podman` commands
    root: Path


@contextlib.contextmanager
def podman_engine(root: Path, image: str, tools: Iterable[str] = TOOLS,
                  files: dict[str, str] | None = None,
                  registries_conf: str | None = None) -> Iterator[Podman]:
    """Build `image` and serve the Docker API from `root`; pytest.skip if impossible.
    The image is removed and the service stopped on exit."""
    why = have_podman()
    if why:
        pytest.skip(why)
    (root / "containers.conf").write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(root / "containers.conf")}
    if registries_conf is not None:
        (root / "registries.conf").write_text(registries_conf)
        env["CONTAINERS_REGISTRIES_CONF"] = str(root / "registries.conf")
    host = f"unix://{root}/podman.sock"
    service: subprocess.Popen[bytes] | None = None
    client = None
    try:
        why = build_image(root, env, image, tools, files)
        if why:
            pytest.skip(why)
        with open(root / "service.log", "wb") as log:
            service = subprocess.Popen(["podman", "system", "service", "--time=0", host],
                                       env=env, stdout=subprocess.DEVNULL, stderr=log,
                                       cwd=root)  # conmon drops an `oom` file in its cwd
        client = connect(host, service)
        if client is None:
            pytest.skip(f"podman system service did not start: "
                        f"{(root / 'service.log').read_text()[-2000:]}")
        try:
            probe = client.containers.run(image, ["echo", "ok"], remove=True)
        except docker.errors.DockerException as error:
            pytest.skip(f"podman cannot run a container here: {error}")
        assert probe.strip() == b"ok"
        yield Podman(host, client, env, root)
    finally:
        if client is not None:
            client.close()
        if service is not None:
            service.terminate()
            service.wait(timeout=10)
        subprocess.run(["podman", "rmi", "-f", image], env=env, capture_output=True)
