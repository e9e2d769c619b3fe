"""Typed access to botocore's service models: the wire spec kobako implements.

botocore is used only as a model library here (ServiceModel, OperationModel, Shape);
kobako never uses its clients on the server path, except to reach another S3 endpoint
that holds a bucket's bytes (kobako.store.remote).

Decoding a model's gzipped JSON (and botocore's scan of every service it knows,
on the first load) is a good part of a server's start: S3's alone takes ~35 ms.
So each model, as botocore's loader returns it, is also kept in marshal form under
`~/.cache/kobako/models` (`$KOBAKO_CACHE_DIR`, else `$XDG_CACHE_HOME/kobako`),
named by a digest of the botocore version, the Python version and the path, size and
mtime of every file the model is read from; loading that takes ~3 ms. A cache file
that is missing, unreadable or not a model is ignored, and one is written (atomically)
whenever botocore had to be asked.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import marshal
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import botocore
from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel, Shape

__all__ = ["OperationModel", "ServiceModel", "Shape", "model_cache_dir", "service_model"]

log = logging.getLogger("kobako")

_loader = Loader()
_TYPE = "service-2"


@functools.cache
def service_model(name: str) -> ServiceModel:
    """The latest botocore model of service `name` (for example 's3', 'batch')."""
    return ServiceModel(load_model_data(name), service_name=name)


def model_cache_dir() -> Path:
    explicit = os.environ.get("KOBAKO_CACHE_DIR")
    if explicit:
        return Path(explicit) / "models"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kobako" / "models"


def load_model_data(name: str) -> dict[str, Any]:
    """The model's data as `Loader.load_service_model(name, 'service-2')` gives it,
    from the cache when the files it comes from have not changed."""
    path: Path | None
    try:
        path = model_cache_dir() / f"{name}-{_source_key(name)}.marshal"
    except Exception:  # botocore could not place the files: let it say why below
        path = None
    if path is not None:
        try:
            data = marshal.loads(path.read_bytes())
            if isinstance(data, dict) and isinstance(data.get("shapes"), dict):
                return data
        except (OSError, ValueError, EOFError, TypeError):
            pass
    data = _plain(_loader.load_service_model(name, _TYPE))
    if path is not None:
        _write(path, marshal.dumps(data))
    return data  # type: ignore[no-any-return]


def _source_key(name: str) -> str:
    """A digest of what the model is made from: change any file and the key changes."""
    version = _loader.determine_latest_version(name, _TYPE)
    parts = [botocore.__version__, sys.implementation.cache_tag, str(marshal.version), name,
             version]
    for root in _loader.search_paths:
        for base in (_TYPE, *(f"{_TYPE}.{extra}-extras" for extra in _loader.extras_types)):
            for ext in (".json", ".json.gz"):
                source = os.path.join(root, name, version, base + ext)
                try:
                    stat = os.stat(source)
                except OSError:
                    continue
                parts.append(f"{source}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _plain(value: Any) -> Any:
    """botocore's OrderedDicts as dicts (ordered too), which marshal can write."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _write(path: Path, data: bytes) -> None:
    """Temp file, then rename: a reader sees the whole file or none. Best effort."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
        service = path.name.rsplit("-", 1)[0]
        for stale in path.parent.glob(f"{service}-*.marshal"):  # older botocore versions'
            if stale != path and stale.name.rsplit("-", 1)[0] == service:
                stale.unlink(missing_ok=True)
    except OSError as error:
        log.debug("could not cache the %s model in %s: %s", path.name, path.parent, error)
