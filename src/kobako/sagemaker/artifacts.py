"""Moving bytes between kobako's own S3 and a job's directory, in process.

Training input, source tarballs and model artifacts never travel over HTTP: they are
read from and written to the S3 store directly (blob files + one row per object), off
the event loop. Tarballs are unpacked with tarfile's "data" filter, so an archive
cannot write outside its destination.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path

from kobako.s3.store import ObjectRecord, S3Store, now

_PAGE = 1000
_CHUNK = 1024 * 1024


class S3Missing(Exception):
    """A bucket or key the job needs is not in kobako's S3; the message is for users."""


def _safe_target(dest: Path, relative: str) -> Path | None:
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return dest.joinpath(*parts)


def copy_object(store: S3Store, record: ObjectRecord, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        for blob_id, _ in record.segments:
            with store.blobs.open(blob_id) as source:
                shutil.copyfileobj(source, out, _CHUNK)


def download_prefix(store: S3Store, bucket: str, prefix: str, dest: Path) -> int:
    """Copy every object under `prefix` into `dest`, keyed by the path after the prefix.

    Returns the number of files; raises S3Missing when the bucket does not exist.
    """
    if store.get_bucket(bucket) is None:
        raise S3Missing(f"The specified bucket does not exist: {bucket}")
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    after = ""
    while True:
        records = store.list_objects(bucket, prefix, after, _PAGE)
        for record in records:
            if record.key.endswith("/"):
                continue
            relative = record.key[len(prefix):].lstrip("/") or record.key.rsplit("/", 1)[-1]
            target = _safe_target(dest, relative)
            if target is not None:
                copy_object(store, record, target)
                count += 1
        if len(records) < _PAGE:
            return count
        after = records[-1].key


def download_object(store: S3Store, bucket: str, key: str, target: Path) -> None:
    record = store.get_object(bucket, key)
    if record is None:
        raise S3Missing(f"s3://{bucket}/{key} does not exist")
    copy_object(store, record, target)


def upload_file(store: S3Store, bucket: str, key: str, path: Path,
                content_type: str = "application/x-tar") -> None:
    """Store `path` as object `key`, durably (blob first, then the row)."""
    if store.get_bucket(bucket) is None:
        raise S3Missing(f"The specified bucket does not exist: {bucket}")
    writer = store.writer_for(bucket)
    md5 = hashlib.md5()
    try:
        with open(path, "rb") as source:
            while chunk := source.read(_CHUNK):
                writer.write(chunk)
                md5.update(chunk)
        blob_id = writer.commit()
    except BaseException:
        writer.abort()
        raise
    record = ObjectRecord(bucket=bucket, key=key, size=writer.size, etag=f'"{md5.hexdigest()}"',
                          last_modified=now(), storage_class="STANDARD",
                          segments=[(blob_id, writer.size)],
                          headers={"ContentType": content_type})
    try:
        replaced = store.put_object(record)
    except BaseException:
        store.discard([blob_id])
        raise
    store.discard(replaced)


def pack(source: Path, archive: Path) -> None:
    """tar.gz of the contents of `source` (names relative to it, as SageMaker packs them)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(source.rglob("*")):
            tar.add(item, arcname=item.relative_to(source).as_posix(), recursive=False)


def unpack(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(dest, filter="data")


def fetch_tarball(store: S3Store, uri_or_path: str, dest: Path, scratch: Path) -> None:
    """Unpack a tar.gz named by an s3:// URI (kobako's S3) or a local path into `dest`."""
    if uri_or_path.startswith("s3://"):
        bucket, _, key = uri_or_path[5:].partition("/")
        download_object(store, bucket, key, scratch)
        unpack(scratch, dest)
        scratch.unlink(missing_ok=True)
        return
    local = Path(uri_or_path.removeprefix("file://"))
    if local.is_dir():
        shutil.copytree(local, dest, dirs_exist_ok=True)
    elif local.is_file():
        unpack(local, dest)
    else:
        raise S3Missing(f"{uri_or_path} does not exist")


def upload_dir(store: S3Store, bucket: str, prefix: str, source: Path,
               content_type: str = "binary/octet-stream") -> int:
    """Upload every file under `source` to `prefix` + its relative path; the count."""
    base = f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""
    count = 0
    for item in sorted(source.rglob("*")):
        if item.is_file():
            upload_file(store, bucket, base + item.relative_to(source).as_posix(), item,
                        content_type)
            count += 1
    return count


def list_keys(store: S3Store, bucket: str, prefix: str) -> list[str]:
    """Every object key under `prefix` (folders' marker objects left out)."""
    if store.get_bucket(bucket) is None:
        raise S3Missing(f"The specified bucket does not exist: {bucket}")
    keys: list[str] = []
    after = ""
    while True:
        records = store.list_objects(bucket, prefix, after, _PAGE)
        keys += [r.key for r in records if not r.key.endswith("/")]
        if len(records) < _PAGE:
            return keys
        after = records[-1].key


def read_object(store: S3Store, bucket: str, key: str) -> bytes:
    record = store.get_object(bucket, key)
    if record is None:
        raise S3Missing(f"s3://{bucket}/{key} does not exist")
    chunks = []
    for blob_id, _ in record.segments:
        with store.blobs.open(blob_id) as source:
            chunks.append(source.read())
    return b"".join(chunks)
