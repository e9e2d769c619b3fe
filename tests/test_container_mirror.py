"""The `[runtime] registry_mirror` (pull-through) for Docker Hub images, end to end.

No registry is reachable from here, so the test builds two: the mirror, serving the
locally built busybox image (exported with `podman save --format oci-dir`) read-only
over the Docker Registry HTTP API v2, and a stand-in for Docker Hub (the engine's
registries.conf sends docker.io there) that knows no image at all. A job whose image
is a Docker Hub name missing locally must run from the mirror; one the mirror lacks
must fall back to "Docker Hub" and fail with CannotPullContainerError, promptly.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from batch_helpers import Env, make_env
from conftest import Server, start_server
from kobako.config import RuntimeConfig
from podman_helpers import podman_engine

docker = pytest.importorskip("docker")

IMAGE = f"localhost/kobako-test/mirror-src:{os.getpid()}"  # built locally, exported
MIRRORED = f"docker.io/library/kobakomirror:{os.getpid()}"  # only on the mirror
SHORT = f"kobakoshort:{os.getpid()}"  # a short name: Docker Hub's library/, on the mirror
MISSING = f"docker.io/library/kobakomissing:{os.getpid()}"  # nowhere
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_PATH = re.compile(r"/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<reference>[^/]+)")


@dataclass
class Registry:
    """A read-only Docker Registry HTTP API v2 over what `podman save --format oci-dir`
    wrote: repository -> tag -> manifest digest, and blobs by digest."""

    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    blobs: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # digest -> (body, type)
    requests: list[str] = field(default_factory=list)  # "GET /v2/..." in arrival order

    def add_oci_dir(self, repository: str, tag: str, layout: Path) -> None:
        for path in (layout / "blobs" / "sha256").iterdir():
            self.blobs[f"sha256:{path.name}"] = (path.read_bytes(), "application/octet-stream")
        index = json.loads((layout / "index.json").read_text())
        manifest = index["manifests"][0]
        digest = str(manifest["digest"])
        self.blobs[digest] = (self.blobs[digest][0], str(manifest.get("mediaType", OCI_MANIFEST)))
        self.tags.setdefault(repository, {})[tag] = digest

    def resolve(self, path: str) -> tuple[bytes, str, str] | None:
        """(body, content type, digest) for a /v2/<name>/manifests|blobs/<ref> path."""
        match = _PATH.fullmatch(path)
        if match is None:
            return None
        name, kind, reference = match.group("name", "kind", "reference")
        if kind == "manifests":
            digest = self.tags.get(name, {}).get(reference, "")
            if not digest and reference.startswith("sha256:") and name in self.tags \
                    and reference in self.tags[name].values():
                digest = reference
        else:
            digest = reference if name in self.tags else ""
        if digest not in self.blobs:
            return None
        body, content_type = self.blobs[digest]
        return body, content_type, digest


def _handler(registry: Registry) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body)),
                                "Docker-Distribution-API-Version": "registry/2.0"}.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _answer(self) -> None:
            registry.requests.append(f"{self.command} {self.path}")
            if self.path == "/v2/":
                self._send(200, b"{}", {"Content-Type": "application/json"})
                return
            found = registry.resolve(self.path.split("?", 1)[0])
            if found is None:
                code = "MANIFEST_UNKNOWN" if "/manifests/" in self.path else "BLOB_UNKNOWN"
                body = json.dumps({"errors": [{"code": code, "message": f"{code.lower()}",
                                               "detail": {}}]}).encode()
                self._send(404, body, {"Content-Type": "application/json"})
                return
            body, content_type, digest = found
            assert hashlib.sha256(body).hexdigest() == digest.removeprefix("sha256:")
            self._send(200, body, {"Content-Type": content_type, "Docker-Content-Digest": digest})

        do_GET = do_HEAD = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class Setup:
    host: str  # the engine's Docker API
    client: Any  # docker.DockerClient
    env: dict[str, str]  # for `podman` commands against the same storage
    mirror: Registry
    mirror_addr: str  # "127.0.0.1:PORT"
    hub: Registry  # where the engine's docker.io points


def _serve(registry: Registry) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(registry))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("podman-mirror")
    mirror, hub = Registry(), Registry()
    mirror_server, hub_server = _serve(mirror), _serve(hub)
    mirror_addr = f"127.0.0.1:{mirror_server.server_address[1]}"
    hub_addr = f"127.0.0.1:{hub_server.server_address[1]}"
    registries = ("unqualified-search-registries = []\n"
                  f'[[registry]]\nlocation = "{mirror_addr}"\ninsecure = true\n'
                  f'[[registry]]\nprefix = "docker.io"\nlocation = "{hub_addr}"\n'
                  "insecure = true\n")
    try:
        with podman_engine(root, IMAGE, registries_conf=registries) as podman:
            layout = root / "oci"
            subprocess.run(["podman", "save", "--format", "oci-dir", "-o", str(layout), IMAGE],
                           env=podman.env, check=True, capture_output=True)
            repository, _, tag = MIRRORED.removeprefix("docker.io/").rpartition(":")
            mirror.add_oci_dir(repository, tag, layout)
            mirror.add_oci_dir(f"library/{SHORT.split(':')[0]}", tag, layout)
            # Gone from the engine, so its layer can only come from the mirror.
            subprocess.run(["podman", "rmi", "-f", IMAGE], env=podman.env, check=True,
                           capture_output=True)
            try:
                yield Setup(podman.host, podman.client, podman.env, mirror, mirror_addr, hub)
            finally:
                for image in (MIRRORED, f"{mirror_addr}/{repository}:{tag}",
                              f"docker.io/library/{SHORT}",
                              f"{mirror_addr}/library/{SHORT}"):
                    subprocess.run(["podman", "rmi", "-f", image], env=podman.env,
                                   capture_output=True)
    finally:
        for server in (mirror_server, hub_server):
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def msrv(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Spelled as in Docker's daemon.json; kobako pulls "<host:port>/library/...".
    running = _server(tmp_path_factory.mktemp("kobako-mirror"), setup,
                      f"http://{setup.mirror_addr}/")
    yield running
    running.stop()
    assert " -> 500 " not in running.log(), "a request was answered with HTTP 500"


def _server(root: Path, setup: Setup, mirror: str) -> Server:
    config = root / "kobako.toml"
    config.write_text(f'[runtime]\ndefault = "container"\ncontainer_host = "{setup.host}"\n'
                      f'pull_timeout = 30\nregistry_mirror = "{mirror}"\n')
    return start_server(root / "data", config=config)


def _job(server: Server, image: str, script: str) -> dict[str, Any]:
    batch = server.client("batch")
    env: Env = make_env(batch, max_vcpus=2)
    name = env.definition(["sh", "-c", script], container={
        "image": image, "resourceRequirements": [{"type": "VCPU", "value": "0.5"},
                                                 {"type": "MEMORY", "value": "64"}]})
    return env.wait(env.submit(name), timeout=60)


def _messages(server: Server, job: dict[str, Any]) -> list[str]:
    events = server.client("logs").get_log_events(
        logGroupName="/aws/batch/job", logStreamName=job["container"]["logStreamName"],
        startFromHead=True)["events"]
    return [str(e["message"]) for e in events]


def test_docker_hub_image_is_pulled_through_the_mirror(msrv: Server, setup: Setup) -> None:
    with pytest.raises(docker.errors.ImageNotFound):
        setup.client.images.get(MIRRORED)
    job = _job(msrv, MIRRORED, "cat /etc/kobako-test-image; echo from-the-mirror")
    assert job["status"] == "SUCCEEDED", job
    assert _messages(msrv, job) == ["busybox", "from-the-mirror"]
    repository, _, tag = MIRRORED.removeprefix("docker.io/").rpartition(":")
    manifest = setup.mirror.tags[repository][tag]
    seen = setup.mirror.requests
    assert any(r.endswith(f"/v2/{repository}/manifests/{tag}") for r in seen), seen
    blobs = {digest for digest in setup.mirror.blobs if digest != manifest}
    fetched = {r.rsplit("/", 1)[-1] for r in seen if f"/v2/{repository}/blobs/" in r}
    assert blobs and blobs <= fetched, (blobs, seen)
    assert setup.hub.requests == []  # Docker Hub itself was never asked
    assert f"pulled {MIRRORED} from the mirror {setup.mirror_addr}" in msrv.log()
    # Tagged under its Docker Hub name: the next job finds it local, no second pull.
    assert setup.client.images.get(MIRRORED).id
    before = len(seen)
    again = _job(msrv, MIRRORED, "echo again")
    assert again["status"] == "SUCCEEDED", again
    assert not any("/manifests/" in r for r in setup.mirror.requests[before:])


def test_short_docker_hub_name_is_pulled_through_the_mirror(msrv: Server, setup: Setup) -> None:
    job = _job(msrv, SHORT, "echo short-name")
    assert job["status"] == "SUCCEEDED", job
    assert _messages(msrv, job) == ["short-name"]
    name, _, tag = SHORT.partition(":")
    assert f"GET /v2/library/{name}/manifests/{tag}" in setup.mirror.requests
    assert setup.hub.requests == []
    assert f"pulled {SHORT} from the mirror {setup.mirror_addr}" in msrv.log()


def test_mirror_miss_falls_back_to_the_registry(msrv: Server, setup: Setup) -> None:
    started = time.monotonic()
    job = _job(msrv, MISSING, "echo never")
    assert time.monotonic() - started < 30  # two prompt 404s, not a pull timeout
    assert job["status"] == "FAILED", job
    reason = job["attempts"][0]["container"]["reason"]
    assert reason.startswith("CannotPullContainerError: "), reason
    assert job["statusReason"] == reason
    repository, _, tag = MISSING.removeprefix("docker.io/").rpartition(":")
    assert any(r.endswith(f"/v2/{repository}/manifests/{tag}") for r in setup.mirror.requests)
    assert any(r.endswith(f"/v2/{repository}/manifests/{tag}") for r in setup.hub.requests), \
        setup.hub.requests  # kobako fell back to "Docker Hub" after the mirror's 404
    log = msrv.log()
    assert f"mirror pull of {setup.mirror_addr}/{repository}:{tag} failed" in log
    assert f"pulled {MISSING}" not in log


def test_unreachable_mirror_falls_back_to_the_registry(setup: Setup, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    server = _server(tmp_path, setup, closed)
    asked_before = len(setup.hub.requests)
    try:
        started = time.monotonic()
        job = _job(server, MISSING, "echo never")
        assert time.monotonic() - started < 30
        assert job["status"] == "FAILED", job
        assert job["statusReason"].startswith("CannotPullContainerError: "), job
        repository, _, tag = MISSING.removeprefix("docker.io/").rpartition(":")
        assert f"mirror pull of {closed}/{repository}:{tag} failed" in server.log()
        assert any(r.endswith(f"/v2/{repository}/manifests/{tag}")
                   for r in setup.hub.requests[asked_before:]), setup.hub.requests
    finally:
        server.stop()


def test_mirror_setting_accepts_daemon_json_urls() -> None:
    def parse(value: str) -> str | None:
        return RuntimeConfig.parse({"registry_mirror": value}).registry_mirror

    assert parse("https://mirror.gcr.io") == "mirror.gcr.io"
    assert parse("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    assert parse("harbor.internal/dockerhub-proxy") == "harbor.internal/dockerhub-proxy"
    assert parse("") is None
