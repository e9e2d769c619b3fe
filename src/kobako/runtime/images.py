"""Getting a job's image onto the engine: local first, else a bounded, logged pull.

A pull that fails (or outlasts its timeout) becomes a `CannotPullContainerError`
reason, as on AWS. Engines do not pass a registry's rate-limit headers on, so on a
429 kobako asks the registry itself (a HEAD on the manifest, as Docker Hub documents)
and puts RateLimit-Limit / RateLimit-Remaining into the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kobako.runtime.lazy import LazyModule
from kobako.runtime.threads import in_thread

if TYPE_CHECKING:
    import docker
    import docker.errors
    import docker.types
else:
    docker = LazyModule("docker")


log = logging.getLogger("kobako.runtime")

DOCKER_HUB = "docker.io"
_MANIFESTS = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
_RATE_LIMITED = re.compile(r"toomanyrequests|too many requests|\b429\b", re.IGNORECASE)


@dataclass(frozen=True)
class Reference:
    """An image reference split the way registries address it."""

    registry: str  # "docker.io" for Docker Hub
    repository: str  # "library/busybox" on Docker Hub
    tag: str  # a tag, or a digest "sha256:..."

    @classmethod
    def parse(cls, image: str) -> Reference:
        name, digest = image.split("@", 1) if "@" in image else (image, "")
        tag = ""
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name, tag = name.rsplit(":", 1)
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name
            if "/" not in repository:
                repository = f"library/{repository}"
        return cls(registry, repository, digest or tag or "latest")

    @property
    def pull_name(self) -> str:
        sep = "@" if self.tag.startswith("sha256:") else ":"
        return f"{self.registry}/{self.repository}{sep}{self.tag}"


class PullError(Exception):
    """The image could not be pulled; the message is the user-facing detail."""


def rate_limit_note(ref: Reference, timeout: float = 5.0) -> str:
    """'RateLimit-Limit: 100;w=21600, RateLimit-Remaining: 0;w=21600' from the registry,
    or '' if it does not say (or cannot be reached)."""
    host = "registry-1.docker.io" if ref.registry == DOCKER_HUB else ref.registry
    schemes = ["http", "https"] if host.split(":")[0] in _LOOPBACK else ["https"]
    for scheme in schemes:
        url = f"{scheme}://{host}/v2/{ref.repository}/manifests/{ref.tag}"
        try:
            headers = _head(url, {}, timeout)
        except OSError:
            continue
        found = [f"{name}: {headers[name]}" for name in ("RateLimit-Limit", "RateLimit-Remaining")
                 if headers.get(name)]
        return ", ".join(found)
    return ""


def _head(url: str, extra: dict[str, str], timeout: float) -> dict[str, str]:
    """Response headers of a manifest HEAD, fetching an anonymous token on a 401."""
    request = urllib.request.Request(url, method="HEAD", headers={"Accept": _MANIFESTS, **extra})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return dict(response.headers.items())
    except urllib.error.HTTPError as error:
        challenge = error.headers.get("WWW-Authenticate", "")
        if error.code == 401 and not extra and challenge.startswith("Bearer "):
            token = _anonymous_token(challenge, timeout)
            if token:
                return _head(url, {"Authorization": f"Bearer {token}"}, timeout)
        return dict(error.headers.items())


def _anonymous_token(challenge: str, timeout: float) -> str:
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = fields.pop("realm", "")
    if not realm.startswith("https://"):
        return ""
    query = urllib.parse.urlencode(fields)
    try:
        with urllib.request.urlopen(f"{realm}?{query}", timeout=timeout) as response:
            body: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError):
        return ""
    return str(body.get("token") or body.get("access_token") or "")


def _pull_blocking(client: docker.DockerClient, name: str) -> None:
    """Pull, logging each layer's status at most once a second; raise PullError."""
    repository, _, tag = name.rpartition(":") if "@" not in name else (name, "", "")
    last: dict[str, float] = {}
    try:
        for event in client.api.pull(repository, tag=tag or None, stream=True, decode=True):
            if "error" in event:
                raise PullError(str(event.get("error")))
            key = str(event.get("id", ""))
            if time.monotonic() - last.get(key, 0.0) >= 1.0:
                last[key] = time.monotonic()
                log.info("pulling %s: %s %s %s", name, key, event.get("status", ""),
                         event.get("progress", ""))
    except docker.errors.APIError as error:
        raise PullError(str(error.explanation or error)) from None
    except OSError as error:
        raise PullError(f"cannot reach the container engine: {error}") from None


class ImageCache:
    """Ensures images are present, one pull per image at a time."""

    def __init__(self, client: docker.DockerClient, timeout: float, mirror: str | None) -> None:
        self.client = client
        self.timeout = timeout
        self.mirror = mirror
        self._locks: dict[str, asyncio.Lock] = {}

    def _present(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        return True

    async def ensure(self, image: str) -> None:
        """Return once `image` is local; raise PullError with the reason otherwise."""
        lock = self._locks.setdefault(image, asyncio.Lock())
        async with lock:
            if await asyncio.to_thread(self._present, image):
                return
            ref = Reference.parse(image)
            if self.mirror and ref.registry == DOCKER_HUB and not ref.tag.startswith("sha256:") \
                    and await self._via_mirror(image, ref):
                return
            log.info("image %s is not local; pulling %s", image, ref.pull_name)
            try:
                await asyncio.wait_for(in_thread(lambda: _pull_blocking(
                    self.client, ref.pull_name)), self.timeout)
            except TimeoutError:
                raise PullError(f"pull of {image} did not finish within {self.timeout:g} s "
                                f"{await self._note(ref)}".rstrip()) from None
            except PullError as error:
                note = await self._note(ref) if _RATE_LIMITED.search(str(error)) else ""
                raise PullError(f"{error} {note}".rstrip()) from None
            log.info("pulled %s", image)

    async def _via_mirror(self, image: str, ref: Reference) -> bool:
        mirrored = f"{self.mirror}/{ref.repository}:{ref.tag}"

        def pull_and_tag() -> None:
            _pull_blocking(self.client, mirrored)
            self.client.images.get(mirrored).tag(f"{ref.registry}/{ref.repository}", ref.tag)

        try:
            await asyncio.wait_for(in_thread(pull_and_tag), self.timeout)
        except (TimeoutError, PullError, docker.errors.APIError) as error:
            log.warning("mirror pull of %s failed (%s); trying the registry", mirrored, error)
            return False
        log.info("pulled %s from the mirror %s", image, self.mirror)
        return True

    async def _note(self, ref: Reference) -> str:
        note = await asyncio.to_thread(rate_limit_note, ref)
        return f"({note})" if note else ""
