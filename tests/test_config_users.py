"""Several users from a config file: each signs with its own secret, accounts are isolated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import start_server

CONFIG = """
region = "eu-west-1"

[[users]]
access_key_id = "AKIAALICE"
secret_access_key = "alice-secret"
display_name = "alice"
account_id = "111111111111"

[[users]]
access_key_id = "AKIABOB"
secret_access_key = "bob-secret"
display_name = "bob"
account_id = "222222222222"
"""


def test_users_and_account_isolation(tmp_path: Path) -> None:
    config = tmp_path / "kobako.toml"
    config.write_text(CONFIG)
    server = start_server(tmp_path / "data", config=config)
    try:
        def client(service: str, key: str, secret: str) -> Any:
            return boto3.client(service, endpoint_url=server.url, region_name="us-east-1",
                                aws_access_key_id=key, aws_secret_access_key=secret)

        alice = client("s3", "AKIAALICE", "alice-secret")
        bob = client("s3", "AKIABOB", "bob-secret")
        alice.create_bucket(Bucket="alice-data")
        alice.put_object(Bucket="alice-data", Key="k", Body=b"a")
        assert [b["Name"] for b in bob.list_buckets()["Buckets"]] == []
        with pytest.raises(ClientError) as exc:
            bob.get_object(Bucket="alice-data", Key="k")
        assert exc.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError) as exc:
            bob.create_bucket(Bucket="alice-data")
        assert exc.value.response["Error"]["Code"] == "BucketAlreadyExists"
        identity = client("sts", "AKIABOB", "bob-secret").get_caller_identity()
        assert identity["Account"] == "222222222222"
        # The default test/test user is gone once a config names users.
        with pytest.raises(ClientError) as exc:
            client("s3", "test", "test").list_buckets()
        assert exc.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        # A user signing with another's secret fails.
        with pytest.raises(ClientError) as exc:
            client("s3", "AKIABOB", "alice-secret").list_buckets()
        assert exc.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    finally:
        server.stop()
