"""Small PutObject bodies live in SQLite with their row (kobako.store.inline): every S3
operation reads them as it reads file-backed objects, overwrites and deletes free them
in the same transaction, and `inline_bytes = 0` turns the feature off."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Server, start_server

INLINE_LIMIT = 64 * 1024  # the default `inline_bytes`


def _inline_rows(server: Server) -> int:
    """Inline bodies: rows of `blob_rows`, and of `blob_inline` (written before it)."""
    with sqlite3.connect(server.data_dir / "kobako.db") as conn:
        return sum(int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                   for table in ("blob_rows", "blob_inline"))


def _blob_files(server: Server) -> int:
    root = server.data_dir / "s3"
    return sum(1 for path in root.rglob("*")
               if path.is_file() and path.relative_to(root).parts[0] != "tmp")


def _segments(server: Server, bucket: str, key: str) -> str:
    with sqlite3.connect(server.data_dir / "kobako.db") as conn:
        row = conn.execute("SELECT segments FROM s3_objects WHERE bucket = ? AND key = ?",
                           (bucket, key)).fetchone()
    return str(row[0])


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path / "data")
    yield running
    running.stop()
    assert " -> 500 " not in running.log()


def test_small_bodies_are_rows_large_ones_files(own_server: Server) -> None:
    s3: Any = own_server.client("s3")
    s3.create_bucket(Bucket="inl")
    small, edge, large = os.urandom(4096), os.urandom(INLINE_LIMIT), os.urandom(INLINE_LIMIT + 1)
    files_before, rows_before = _blob_files(own_server), _inline_rows(own_server)
    s3.put_object(Bucket="inl", Key="small", Body=small)
    s3.put_object(Bucket="inl", Key="edge", Body=edge)
    assert _inline_rows(own_server) == rows_before + 2
    assert _blob_files(own_server) == files_before
    assert re.fullmatch(r'\[\["@[1-9][0-9]*", 4096\]\]', _segments(own_server, "inl", "small"))
    s3.put_object(Bucket="inl", Key="large", Body=large)
    assert _blob_files(own_server) == files_before + 1
    assert not _segments(own_server, "inl", "large").startswith('[["@')
    for key, body in (("small", small), ("edge", edge), ("large", large)):
        got = s3.get_object(Bucket="inl", Key=key)
        assert got["Body"].read() == body
        assert got["ContentLength"] == len(body)
    ranged = s3.get_object(Bucket="inl", Key="small", Range="bytes=100-199")
    assert ranged["Body"].read() == small[100:200]
    assert ranged["ContentRange"] == "bytes 100-199/4096"
    tail = s3.get_object(Bucket="inl", Key="edge", Range="bytes=-10")["Body"].read()
    assert tail == edge[-10:]


def test_overwrite_and_delete_free_inline_rows(own_server: Server) -> None:
    s3: Any = own_server.client("s3")
    s3.create_bucket(Bucket="free")
    rows = _inline_rows(own_server)
    s3.put_object(Bucket="free", Key="k", Body=b"one")
    s3.put_object(Bucket="free", Key="k", Body=b"two")
    assert _inline_rows(own_server) == rows + 1  # the first body went with its row
    assert s3.get_object(Bucket="free", Key="k")["Body"].read() == b"two"
    s3.put_object(Bucket="free", Key="k", Body=os.urandom(INLINE_LIMIT + 10))  # now a file
    assert _inline_rows(own_server) == rows
    s3.put_object(Bucket="free", Key="k", Body=b"three")
    s3.delete_object(Bucket="free", Key="k")
    assert _inline_rows(own_server) == rows
    s3.put_object(Bucket="free", Key="a", Body=b"a")
    s3.put_object(Bucket="free", Key="b", Body=b"b")
    s3.delete_objects(Bucket="free", Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
    assert _inline_rows(own_server) == rows


def test_versions_keep_their_inline_bodies(own_server: Server) -> None:
    s3: Any = own_server.client("s3")
    s3.create_bucket(Bucket="vers")
    s3.put_bucket_versioning(Bucket="vers", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="vers", Key="k", Body=b"v1")["VersionId"]
    second = s3.put_object(Bucket="vers", Key="k", Body=b"v2")["VersionId"]
    s3.delete_object(Bucket="vers", Key="k")  # a delete marker: both bodies stay
    assert s3.get_object(Bucket="vers", Key="k", VersionId=first)["Body"].read() == b"v1"
    assert s3.get_object(Bucket="vers", Key="k", VersionId=second)["Body"].read() == b"v2"
    rows = _inline_rows(own_server)
    s3.delete_object(Bucket="vers", Key="k", VersionId=first)
    assert _inline_rows(own_server) == rows - 1
    assert s3.get_object(Bucket="vers", Key="k", VersionId=second)["Body"].read() == b"v2"


def test_copies_of_inline_objects(own_server: Server) -> None:
    s3: Any = own_server.client("s3")
    s3.create_bucket(Bucket="src")
    s3.create_bucket(Bucket="dst")
    body = os.urandom(10_000)
    s3.put_object(Bucket="src", Key="k", Body=body, Metadata={"m": "1"})
    s3.copy_object(Bucket="dst", Key="copy", CopySource={"Bucket": "src", "Key": "k"})
    assert s3.get_object(Bucket="dst", Key="copy")["Body"].read() == body
    # The copy has a lifetime of its own.
    s3.delete_object(Bucket="src", Key="k")
    assert s3.get_object(Bucket="dst", Key="copy")["Body"].read() == body
    # Multipart: a part copied from an inline object, then a part sent as such.
    upload = s3.create_multipart_upload(Bucket="dst", Key="mp")["UploadId"]
    big = os.urandom(5 * 1024 * 1024)
    one = s3.upload_part(Bucket="dst", Key="mp", UploadId=upload, PartNumber=1, Body=big)
    two = s3.upload_part_copy(Bucket="dst", Key="mp", UploadId=upload, PartNumber=2,
                              CopySource={"Bucket": "dst", "Key": "copy"},
                              CopySourceRange="bytes=0-4999")
    s3.complete_multipart_upload(Bucket="dst", Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": one["ETag"]},
                  {"PartNumber": 2, "ETag": two["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket="dst", Key="mp")["Body"].read() == big + body[:5000]


def test_inline_bytes_zero_writes_files(tmp_path: Path) -> None:
    config = tmp_path / "kobako.toml"
    config.write_text("inline_bytes = 0\n")
    server = start_server(tmp_path / "data", config=config)
    try:
        s3: Any = server.client("s3")
        s3.create_bucket(Bucket="files")
        s3.put_object(Bucket="files", Key="k", Body=b"tiny")
        assert _inline_rows(server) == 0
        assert _blob_files(server) == 1
        assert s3.get_object(Bucket="files", Key="k")["Body"].read() == b"tiny"
    finally:
        server.stop()


def test_inline_bytes_must_be_a_size(tmp_path: Path) -> None:
    config = tmp_path / "kobako.toml"
    config.write_text("inline_bytes = true\n")
    with pytest.raises(RuntimeError, match="inline_bytes"):
        start_server(tmp_path / "data", config=config)


def test_inline_ids_are_never_reused(tmp_path: Path) -> None:
    """An inline body's id is never given to another body while the server runs, even
    once the first is deleted, nor after a restart to an id that a row still holds."""
    server = start_server(tmp_path / "data")
    try:
        s3: Any = server.client("s3")
        s3.create_bucket(Bucket="ids")
        s3.put_object(Bucket="ids", Key="keep", Body=b"keep")
        s3.put_object(Bucket="ids", Key="gone", Body=b"gone")
        gone = _segments(server, "ids", "gone")
        s3.delete_object(Bucket="ids", Key="gone")
        s3.put_object(Bucket="ids", Key="next", Body=b"next")
        ids = [json.loads(_segments(server, "ids", key))[0][0] for key in ("keep", "next")]
        used = [*ids, json.loads(gone)[0][0]]
        assert len(set(used)) == 3
    finally:
        server.stop()
    server = start_server(tmp_path / "data")
    try:
        s3 = server.client("s3")
        s3.put_object(Bucket="ids", Key="after", Body=b"after")
        after = json.loads(_segments(server, "ids", "after"))[0][0]
        assert int(after[1:]) > max(int(i[1:]) for i in ids)
        assert s3.get_object(Bucket="ids", Key="keep")["Body"].read() == b"keep"
    finally:
        server.stop()


def test_bodies_stored_under_legacy_ids_still_serve(tmp_path: Path) -> None:
    """Data directories written before `blob_rows` keep small bodies in `blob_inline`
    under `@` and 32 hex digits: they read, copy, and are freed as before."""
    server = start_server(tmp_path / "data")
    s3: Any = server.client("s3")
    s3.create_bucket(Bucket="old")
    body = os.urandom(5000)
    s3.put_object(Bucket="old", Key="k", Body=body)
    server.stop()
    legacy = "@" + "0123456789abcdef" * 2
    with sqlite3.connect(tmp_path / "data" / "kobako.db") as conn:
        (segments,) = conn.execute(
            "SELECT segments FROM s3_objects WHERE key = 'k'").fetchone()
        (new_id, size), = json.loads(segments)
        conn.execute("INSERT INTO blob_inline (id, data) SELECT ?, data FROM blob_rows "
                     "WHERE id = ?", (legacy, int(new_id[1:])))
        conn.execute("DELETE FROM blob_rows WHERE id = ?", (int(new_id[1:]),))
        conn.execute("UPDATE s3_objects SET segments = ? WHERE key = 'k'",
                     (json.dumps([[legacy, size]]),))
    server = start_server(tmp_path / "data")
    try:
        s3 = server.client("s3")
        assert s3.get_object(Bucket="old", Key="k")["Body"].read() == body
        ranged = s3.get_object(Bucket="old", Key="k", Range="bytes=10-19")["Body"].read()
        assert ranged == body[10:20]
        s3.copy_object(Bucket="old", Key="copy", CopySource={"Bucket": "old", "Key": "k"})
        assert _segments(server, "old", "copy").startswith('[["@')
        assert legacy not in _segments(server, "old", "copy")
        s3.put_object(Bucket="old", Key="k", Body=b"new")  # frees the legacy row
        with sqlite3.connect(tmp_path / "data" / "kobako.db") as conn:
            assert conn.execute("SELECT count(*) FROM blob_inline").fetchone()[0] == 0
        assert s3.get_object(Bucket="old", Key="copy")["Body"].read() == body
        assert s3.get_object(Bucket="old", Key="k")["Body"].read() == b"new"
    finally:
        server.stop()
    assert " -> 500 " not in server.log()
