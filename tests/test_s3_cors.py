"""CORS rules through boto3; preflight and actual requests as a browser sends them."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import Server

RULES = {"CORSRules": [
    {"AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["GET", "PUT"],
     "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"],
     "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]}


def test_cors_configuration_round_trip(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert exc.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rules[0]["AllowedHeaders"] == ["content-type", "x-amz-*"]
    assert rules[1]["AllowedOrigins"] == ["*"]
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]})
    assert exc.value.response["Error"]["Code"] == "InvalidRequest"
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=bucket)


def test_preflight_and_actual_requests(server: Server, s3: Any, bucket: str) -> None:
    url = f"{server.url}/{bucket}/upload.txt"
    ask = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
           "Access-Control-Request-Headers": "Content-Type, X-Amz-Meta-Name"}
    assert requests.options(url, headers=ask, timeout=10).status_code == 403  # no config yet
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    answer = requests.options(url, headers=ask, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "PUT" in answer.headers["Access-Control-Allow-Methods"]
    assert answer.headers["Access-Control-Max-Age"] == "600"
    assert "X-Amz-Meta-Name" in answer.headers["Access-Control-Allow-Headers"]
    denied = dict(ask, **{"Access-Control-Request-Headers": "X-Forbidden"})
    assert requests.options(url, headers=denied, timeout=10).status_code == 403
    other = {"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"}
    assert requests.options(url, headers=other, timeout=10).status_code == 403
    anyone = {"Origin": "https://anyone.example", "Access-Control-Request-Method": "GET"}
    answer = requests.options(url, headers=anyone, timeout=10)
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
    # An actual (signed) request from an allowed origin carries the CORS headers.
    s3.put_object(Bucket=bucket, Key="upload.txt", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "upload.txt"})
    got = requests.get(url, headers={"Origin": "https://app.example.com"}, timeout=10)
    assert got.status_code == 200
    assert got.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert got.headers["Access-Control-Expose-Headers"] == "ETag"
    plain = requests.get(url, timeout=10)
    assert "Access-Control-Allow-Origin" not in plain.headers
