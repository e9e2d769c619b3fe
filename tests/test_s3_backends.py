"""Multi-backend buckets: a bucket created on a configured data backend keeps its bytes
in another S3 endpoint (here a second kobako process) and its metadata in kobako."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import Server, free_port, start_server

BACKING = "backing-store"
PREFIX = "blobs/"
MiB = 1024 * 1024


@dataclass
class Pair:
    """The server under test (`front`) and the kobako holding its bytes (`remote`)."""

    front: Server
    remote: Server

    def restart_remote(self) -> None:
        self.remote.stop()
        self.remote = start_server(self.remote.data_dir, port=self.remote.port)

    def kill_and_restart_front(self) -> None:
        self.front.kill()
        self.front = start_server(self.front.data_dir, config=self.front.config_path)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("backends")
    remote = start_server(root / "remote-data")
    remote.client("s3").create_bucket(Bucket=BACKING)
    config = root / "front.toml"
    config.write_text(f"""
[backends.remote]
endpoint_url = "{remote.url}"
region = "us-east-1"
bucket = "{BACKING}"
access_key_id = "test"
secret_access_key = "test"
prefix = "{PREFIX}"
max_attempts = 1

[backends.down]
endpoint_url = "http://127.0.0.1:{free_port()}"
bucket = "nothing-here"
access_key_id = "test"
secret_access_key = "test"
max_attempts = 1
""")
    front = start_server(root / "front-data", config=config)
    running = Pair(front, remote)
    yield running
    running.front.stop()
    running.remote.stop()
    for log in root.glob("server-*.log"):  # both servers, before and after restarts
        assert " -> 500 " not in log.read_text(errors="replace"), f"HTTP 500 in {log}"


_names = iter(range(1_000_000))


def _bucket(s3: Any, backend: str | None = "remote") -> str:
    name = f"mb-{os.getpid()}-{next(_names)}"
    if backend is None:
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name,
                         CreateBucketConfiguration={"LocationConstraint": backend})
    return name


def _remote_objects(pair: Pair) -> dict[str, int]:
    """Backend key -> size, as the remote itself lists them."""
    remote = pair.remote.client("s3")
    out: dict[str, int] = {}
    for page in remote.get_paginator("list_objects_v2").paginate(Bucket=BACKING):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out


def _remote_bytes(pair: Pair, key: str) -> bytes:
    data: bytes = pair.remote.client("s3").get_object(Bucket=BACKING, Key=key)["Body"].read()
    return data


def _new_remote(pair: Pair, before: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in _remote_objects(pair).items() if k not in before}


def _local_files_holding(server: Server, marker: bytes) -> list[Path]:
    """Files in the server's S3 data directory that contain `marker`."""
    root = server.data_dir / "s3"
    return [path for path in root.rglob("*") if path.is_file() and marker in path.read_bytes()]


def _payload(size: int, marker: bytes) -> bytes:
    seed = hashlib.sha256(marker).digest()
    return (marker + seed * (size // len(seed) + 1))[:size]


def _wait_gone(pair: Pair, keys: set[str]) -> None:
    deadline = time.monotonic() + 10
    while keys & set(_remote_objects(pair)):
        assert time.monotonic() < deadline, f"still in the backend: {keys}"
        time.sleep(0.1)


def test_location_constraint_names_a_backend(pair: Pair) -> None:
    s3 = pair.front.client("s3")
    name = _bucket(s3)
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "remote"
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"][
        "x-amz-bucket-region"] == "us-east-1"
    local = _bucket(s3, None)
    assert s3.get_bucket_location(Bucket=local)["LocationConstraint"] is None
    with pytest.raises(ClientError) as error:
        s3.create_bucket(Bucket=f"mb-nowhere-{os.getpid()}",
                         CreateBucketConfiguration={"LocationConstraint": "nowhere"})
    assert error.value.response["Error"]["Code"] == "InvalidLocationConstraint"
    # A real region other than the endpoint's keeps AWS's answer.
    with pytest.raises(ClientError) as error:
        s3.create_bucket(Bucket=f"mb-west-{os.getpid()}",
                         CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    assert error.value.response["Error"]["Code"] == "IllegalLocationConstraintException"
    # us-east-1's idempotent CreateBucket holds for the same backend only.
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "remote"})
    with pytest.raises(ClientError) as error:
        s3.create_bucket(Bucket=name)
    assert error.value.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"


@pytest.mark.parametrize("size", [100, 3 * MiB])  # one-call write, and a spooled stream
def test_put_get_range_head_with_bytes_in_the_backend(pair: Pair, size: int) -> None:
    s3 = pair.front.client("s3")
    name = _bucket(s3)
    marker = f"put-{size}-{os.getpid()}".encode()
    data = _payload(size, marker)
    before = _remote_objects(pair)
    put = s3.put_object(Bucket=name, Key="dir/user key.bin", Body=data, ContentType="x/y",
                        Metadata={"colour": "blue"}, ChecksumAlgorithm="SHA256")
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'

    added = _new_remote(pair, before)
    assert list(added.values()) == [size]
    (backend_key,) = added
    assert backend_key.startswith(PREFIX) and "user" not in backend_key
    assert _remote_bytes(pair, backend_key) == data
    assert _local_files_holding(pair.front, marker) == []

    got = s3.get_object(Bucket=name, Key="dir/user key.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ContentType"] == "x/y" and got["Metadata"] == {"colour": "blue"}
    assert got["ChecksumSHA256"] == put["ChecksumSHA256"]
    ranged = s3.get_object(Bucket=name, Key="dir/user key.bin", Range="bytes=10-59")
    assert ranged["Body"].read() == data[10:60]
    assert ranged["ContentRange"] == f"bytes 10-59/{size}"
    tail = s3.get_object(Bucket=name, Key="dir/user key.bin", Range="bytes=-7")
    assert tail["Body"].read() == data[-7:]
    head = s3.head_object(Bucket=name, Key="dir/user key.bin")
    assert head["ContentLength"] == size and head["ETag"] == put["ETag"]
    listed = s3.list_objects_v2(Bucket=name)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [
        ("dir/user key.bin", size, put["ETag"])]


def test_multipart_parts_live_in_the_backend(pair: Pair) -> None:
    s3 = pair.front.client("s3")
    name = _bucket(s3)
    marker = f"multipart-{os.getpid()}".encode()
    first, second = _payload(5 * MiB, marker + b"-1"), _payload(MiB + 3, marker + b"-2")
    before = _remote_objects(pair)
    upload = s3.create_multipart_upload(Bucket=name, Key="big")["UploadId"]
    etags = [s3.upload_part(Bucket=name, Key="big", UploadId=upload, PartNumber=n,
                            Body=body)["ETag"] for n, body in ((1, first), (2, second))]
    assert sorted(_new_remote(pair, before).values()) == [MiB + 3, 5 * MiB]
    done = s3.complete_multipart_upload(
        Bucket=name, Key="big", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                   for n, e in enumerate(etags, 1)]})
    assert done["ETag"].endswith('-2"')
    whole = first + second
    assert s3.get_object(Bucket=name, Key="big")["Body"].read() == whole
    across = s3.get_object(Bucket=name, Key="big", Range=f"bytes={5 * MiB - 5}-{5 * MiB + 4}")
    assert across["Body"].read() == whole[5 * MiB - 5: 5 * MiB + 5]
    part = s3.get_object(Bucket=name, Key="big", PartNumber=2)
    assert part["Body"].read() == second and part["PartsCount"] == 2
    assert _local_files_holding(pair.front, marker) == []

    # UploadPartCopy from the backend, into the backend.
    copy_upload = s3.create_multipart_upload(Bucket=name, Key="copied")["UploadId"]
    copied = s3.upload_part_copy(Bucket=name, Key="copied", UploadId=copy_upload,
                                 PartNumber=1, CopySource={"Bucket": name, "Key": "big"},
                                 CopySourceRange=f"bytes=0-{MiB - 1}")
    s3.complete_multipart_upload(
        Bucket=name, Key="copied", UploadId=copy_upload,
        MultipartUpload={"Parts": [{"PartNumber": 1,
                                    "ETag": copied["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=name, Key="copied")["Body"].read() == whole[:MiB]

    # An aborted upload's parts leave the backend.
    before = _remote_objects(pair)
    aborted = s3.create_multipart_upload(Bucket=name, Key="gone")["UploadId"]
    s3.upload_part(Bucket=name, Key="gone", UploadId=aborted, PartNumber=1, Body=b"x" * 10)
    (part_key,) = _new_remote(pair, before)
    s3.abort_multipart_upload(Bucket=name, Key="gone", UploadId=aborted)
    _wait_gone(pair, {part_key})


def test_copy_within_and_across_backends(pair: Pair) -> None:
    s3 = pair.front.client("s3")
    remote_bucket, local_bucket = _bucket(s3), _bucket(s3, None)
    marker = f"copy-{os.getpid()}".encode()
    data = _payload(2 * MiB, marker)
    s3.put_object(Bucket=remote_bucket, Key="src", Body=data)

    before = _remote_objects(pair)
    s3.copy_object(Bucket=remote_bucket, Key="same", CopySource=f"{remote_bucket}/src")
    assert list(_new_remote(pair, before).values()) == [len(data)]  # a server-side copy
    assert s3.get_object(Bucket=remote_bucket, Key="same")["Body"].read() == data

    assert _local_files_holding(pair.front, marker) == []
    s3.copy_object(Bucket=local_bucket, Key="down", CopySource=f"{remote_bucket}/src",
                   ChecksumAlgorithm="CRC32")
    assert s3.get_object(Bucket=local_bucket, Key="down")["Body"].read() == data
    assert len(_local_files_holding(pair.front, marker)) == 1  # now a local blob

    before = _remote_objects(pair)
    s3.copy_object(Bucket=remote_bucket, Key="up", CopySource=f"{local_bucket}/down")
    assert list(_new_remote(pair, before).values()) == [len(data)]
    assert s3.get_object(Bucket=remote_bucket, Key="up")["Body"].read() == data


def test_delete_and_versions_free_backend_objects(pair: Pair) -> None:
    s3 = pair.front.client("s3")
    name = _bucket(s3)
    before = _remote_objects(pair)
    s3.put_object(Bucket=name, Key="plain", Body=b"plain bytes")
    (plain_key,) = _new_remote(pair, before)
    s3.delete_object(Bucket=name, Key="plain")
    _wait_gone(pair, {plain_key})
    with pytest.raises(ClientError):
        s3.head_object(Bucket=name, Key="plain")

    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    before = _remote_objects(pair)
    v1 = s3.put_object(Bucket=name, Key="k", Body=b"version one")["VersionId"]
    v2 = s3.put_object(Bucket=name, Key="k", Body=b"version two!")["VersionId"]
    added = _new_remote(pair, before)
    assert sorted(added.values()) == [11, 12]  # the old version's bytes stay
    assert s3.get_object(Bucket=name, Key="k", VersionId=v1)["Body"].read() == b"version one"
    marker = s3.delete_object(Bucket=name, Key="k")
    assert marker["DeleteMarker"] is True
    assert set(added) <= set(_remote_objects(pair))  # a delete marker frees nothing
    s3.delete_object(Bucket=name, Key="k", VersionId=v2)
    v2_key = next(k for k, size in added.items() if size == 12)
    _wait_gone(pair, {v2_key})
    assert s3.get_object(Bucket=name, Key="k", VersionId=v1)["Body"].read() == b"version one"
    versions = s3.list_object_versions(Bucket=name)
    assert [v["VersionId"] for v in versions["Versions"]] == [v1]


def test_post_object_form_and_restart(pair: Pair) -> None:
    s3 = pair.front.client("s3")
    name = _bucket(s3)
    marker = f"form-{os.getpid()}".encode()
    before = _remote_objects(pair)
    post = s3.generate_presigned_post(name, "form.bin", ExpiresIn=60)
    response = requests.post(post["url"], data=post["fields"],
                             files={"file": ("f", marker * 1000)}, timeout=10)
    assert response.status_code == 204, response.text
    assert list(_new_remote(pair, before).values()) == [len(marker) * 1000]
    assert _local_files_holding(pair.front, marker) == []

    pair.kill_and_restart_front()  # the bucket's backend is in its row, not in memory
    s3 = pair.front.client("s3")
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "remote"
    assert s3.get_object(Bucket=name, Key="form.bin")["Body"].read() == marker * 1000
    s3.put_object(Bucket=name, Key="after", Body=b"after restart")
    assert _local_files_holding(pair.front, b"after restart") == []


def test_unreachable_backend_is_a_503_and_keeps_metadata(pair: Pair) -> None:
    s3 = pair.front.client("s3")
    down = _bucket(s3, "down")  # creating a bucket does not call the backend
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=down, Key="k", Body=b"never stored")
    assert error.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "Contents" not in s3.list_objects_v2(Bucket=down)

    name = _bucket(s3)
    put = s3.put_object(Bucket=name, Key="kept", Body=b"acknowledged bytes")
    pair.remote.stop()
    try:
        for key, body in (("kept", b"replacement"), ("new", b"x" * (2 * MiB))):
            with pytest.raises(ClientError) as error:
                s3.put_object(Bucket=name, Key=key, Body=body)
            assert error.value.response["Error"]["Code"] == "ServiceUnavailable"
        with pytest.raises(ClientError) as error:
            s3.get_object(Bucket=name, Key="kept")
        assert error.value.response["Error"]["Code"] == "ServiceUnavailable"
        head = s3.head_object(Bucket=name, Key="kept")  # metadata is kobako's
        assert head["ETag"] == put["ETag"] and head["ContentLength"] == 18
        listed = s3.list_objects_v2(Bucket=name)["Contents"]
        assert [(o["Key"], o["ETag"]) for o in listed] == [("kept", put["ETag"])]
    finally:
        pair.restart_remote()
    assert s3.get_object(Bucket=name, Key="kept")["Body"].read() == b"acknowledged bytes"
    assert "ServiceUnavailable" in pair.front.log() or " -> 503 " in pair.front.log()
