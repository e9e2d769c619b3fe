"""Round trips through kobako's protocol codecs with botocore as the oracle.

Requests: a real boto3 client serializes, signs and prepares the call; a
`before-send` hook hands the prepared request to kobako's codec (routing + parsing)
instead of the network, and the parsed parameters must equal what the caller passed.
Responses: the same hook answers with kobako's `serialize` / `serialize_error`
output, and what the client reads back (all of botocore's parsers and per-service
customizations included) must equal what kobako was asked to write.

No server process: only the codecs, exactly as the ASGI app calls them.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import Shape
from botocore.parsers import create_parser

from kobako.protocol import values
from kobako.protocol.codecs import Codec, codec_for
from kobako.protocol.errors import AwsError
from kobako.protocol.http import BodyStream, HttpRequest, HttpResponse
from kobako.protocol.timestamps import format_timestamp, parse_timestamp
from kobako.spec import service_model

ENDPOINT = "http://127.0.0.1:4566"
REQUEST_ID = "KOBAKOREQUEST123"
KEY = "a b/ü+%.txt"  # space, slash, non-ASCII, '+' and '%': every quoting trap at once
T1 = datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC)  # whole seconds: every format keeps them
T2 = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)  # milliseconds: ISO 8601 and epoch
ROLE = "arn:aws:iam::123456789012:role/service-role"


# ---------------------------------------------------------------- the harness


@cache
def codec(service: str) -> Codec:
    return codec_for(service_model(service))


class _Raw:
    """Just enough of urllib3's response for AWSResponse and StreamingBody."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)

    def stream(self, amt: int = 1024, decode_content: bool = True) -> Iterator[bytes]:
        while chunk := self._buffer.read(amt):
            yield chunk

    def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        return self._buffer.read(amt)

    def close(self) -> None:
        pass


def to_kobako(request: AWSPreparedRequest, streams_body: bool) -> HttpRequest:
    """The prepared request as kobako's ASGI app hands it to the codec."""
    url = urlsplit(request.url)
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        headers[name.lower()] = text
    headers["host"] = url.netloc
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    return HttpRequest(
        method=request.method,
        raw_path=url.path or "/",
        query_string=url.query,
        headers=headers,
        body=BodyStream.of_bytes(body or b""),
        # The app reads small-bodied services' bodies before dispatch (to check the
        # signature) and keeps them here; S3's streams on to the handler.
        body_bytes=None if streams_body else body or b"",
    )


async def _materialize(value: Any) -> Any:
    """Streams read to bytes, so that parsed parameters compare as plain values."""
    if isinstance(value, BodyStream):
        return await value.read_all()
    if isinstance(value, dict):
        return {k: await _materialize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [await _materialize(v) for v in value]
    return value


async def _body_bytes(response: HttpResponse) -> bytes:
    if isinstance(response.body, bytes):
        return response.body
    return b"".join([piece async for piece in response.body])


def to_botocore(response: HttpResponse, url: str, method: str) -> AWSResponse:
    """kobako's response as the client receives it (what the app adds, included)."""
    body = asyncio.run(_body_bytes(response))
    headers = {k: str(v) for k, v in response.headers}
    headers.setdefault("Content-Length", str(len(body)))
    headers["x-amz-request-id"] = REQUEST_ID
    headers["x-amzn-RequestId"] = REQUEST_ID
    if method == "HEAD":  # the app sends no body to HEAD, as S3 does
        body = b""
    return AWSResponse(url, response.status, headers, _Raw(body))


@dataclass
class Exchange:
    operation: str = ""  # what kobako routed the request to
    params: dict[str, Any] = field(default_factory=dict)  # what kobako parsed
    result: dict[str, Any] = field(default_factory=dict)  # what the client returned
    error: ClientError | None = None


def client(service: str, **config: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(
            retries={"total_max_attempts": 1},
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            inject_host_prefix=False,
            **config,
        ),
    )


def exchange(
    service: str,
    operation: str,
    params: dict[str, Any],
    output: dict[str, Any] | None = None,
    error: AwsError | None = None,
    **config: Any,
) -> Exchange:
    """Call `operation` through a real client whose transport is kobako's codec."""
    seen = Exchange()
    the_codec = codec(service)

    def on_send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        http = to_kobako(request, streams_body=service == "s3")
        try:
            op, labels = the_codec.find_operation(http, http.raw_path)
            seen.operation = op.name

            async def parse() -> Any:
                return await _materialize(await the_codec.parse(op, http, labels))

            seen.params = asyncio.run(parse())
            if error is not None:
                raise error
            response = the_codec.serialize(op, {**(output or {}), "__request_id": REQUEST_ID})
        except AwsError as exc:
            response = the_codec.serialize_error(exc, REQUEST_ID)
        return to_botocore(response, request.url, request.method)

    the_client = client(service, **config)
    the_client.meta.events.register("before-send", on_send)
    method = getattr(the_client, _snake(the_client, operation))
    try:
        result = method(**params)
    except ClientError as exc:
        seen.error = exc
    else:
        seen.result = {
            k: (v.read() if hasattr(v, "read") else v)
            for k, v in result.items()
            if k != "ResponseMetadata"
        }
        seen.result["__status"] = result["ResponseMetadata"]["HTTPStatusCode"]
        seen.result["__request_id"] = result["ResponseMetadata"].get("RequestId")
    return seen


def _snake(the_client: Any, operation: str) -> str:
    mapping = {v: k for k, v in the_client.meta.method_to_api_mapping.items()}
    return str(mapping[operation])


@dataclass
class Case:
    service: str
    operation: str
    params: dict[str, Any]
    output: dict[str, Any] | None = None
    # What the SDK adds or rewrites on its own (Content-Length, checksums, quoting).
    injected: dict[str, Any] = field(default_factory=dict)
    # What the client derives from the response beside what kobako wrote.
    derived: dict[str, Any] = field(default_factory=dict)
    status: int | None = None  # expected HTTP status if not the model's responseCode


def case(service: str, operation: str, params: dict[str, Any], **kw: Any) -> Any:
    return pytest.param(Case(service, operation, params, **kw), id=f"{service}.{operation}")


# ---------------------------------------------------------------- the cases

OWNER = {"ID": "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"}
S3_OBJECT = {
    "Key": KEY,
    "LastModified": T2,
    "ETag": '"9b2cf535f27731c974343645a3985328"',
    "Size": 5 * 1024**3 + 1,  # > 2**32: longs must stay exact
    "StorageClass": "STANDARD",
    "Owner": OWNER,
}

CASES = [
    # ------------------------------------------------------------ s3 (rest-xml)
    case("s3", "PutObject", {
        "Bucket": "bkt", "Key": KEY, "Body": b"\x00binary\xffdata",
        "ContentType": "text/plain; charset=utf-8", "CacheControl": "max-age=60",
        "ContentDisposition": 'attachment; filename="x.txt"', "Expires": T1,
        "Metadata": {"color": "blue", "with-dash": "two words"},
        "ObjectLockRetainUntilDate": T1, "ObjectLockMode": "GOVERNANCE",
        "BucketKeyEnabled": True, "Tagging": "a=b&c=d e", "StorageClass": "STANDARD_IA",
    }, injected={"ContentLength": 12}, output={
        "ETag": '"abc"', "VersionId": "v1/+=", "BucketKeyEnabled": True, "Size": 13,
        "ServerSideEncryption": "AES256", "Expiration": 'expiry-date="x", rule-id="r"',
    }),
    case("s3", "GetObject", {
        "Bucket": "bkt", "Key": KEY, "Range": "bytes=0-9", "IfModifiedSince": T1,
        "IfNoneMatch": '"etag"', "PartNumber": 2, "VersionId": "v 1+/",
        "ResponseContentType": "application/x-ü", "ResponseExpires": T1,
    }, injected={"ChecksumMode": "ENABLED"},
    derived={"ExpiresString": format_timestamp(T1, "rfc822")}, output={
        "Body": b"0123456789", "ContentLength": 10, "ContentType": "text/plain",
        "ContentRange": "bytes 0-9/100", "ETag": '"abc"', "LastModified": T1,
        "Metadata": {"color": "blue"}, "AcceptRanges": "bytes", "PartsCount": 3,
        "TagCount": 2, "ObjectLockRetainUntilDate": T2, "MissingMeta": 1,
        "DeleteMarker": False, "Expires": T1,
    }, status=206),
    case("s3", "HeadObject", {"Bucket": "bkt", "Key": "dir/sub/", "IfMatch": '"x"'}, output={
        "ContentLength": 5 * 1024**3, "ETag": '"abc"', "LastModified": T1, "Metadata": {},
        "ContentType": "binary/octet-stream", "VersionId": "null", "StorageClass": "GLACIER",
        "Restore": 'ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"',
    }),
    case("s3", "HeadBucket", {"Bucket": "bkt.with.dots"}, output={
        "BucketRegion": "eu-west-1", "AccessPointAlias": False,
    }),
    case("s3", "CopyObject", {
        "Bucket": "bkt", "Key": "dst key", "CopySource": "src/" + KEY,
        "MetadataDirective": "REPLACE", "Metadata": {"k": "v"},
        "CopySourceIfModifiedSince": T1, "TaggingDirective": "COPY",
    }, injected={"CopySource": "src/" + quote(KEY, safe="/~")}, output={
        "CopyObjectResult": {"ETag": '"abc"', "LastModified": T2},
        "CopySourceVersionId": "sv1", "VersionId": "v2",
    }),
    case("s3", "UploadPart", {
        "Bucket": "bkt", "Key": KEY, "PartNumber": 3, "UploadId": "u/1+2=", "Body": b"part",
    }, injected={"ContentLength": 4}, output={"ETag": '"p3"'}),
    case("s3", "UploadPartCopy", {
        "Bucket": "bkt", "Key": KEY, "PartNumber": 10000, "UploadId": "up",
        "CopySource": "src/key", "CopySourceRange": "bytes=0-99",
    }, output={"CopyPartResult": {"ETag": '"p"', "LastModified": T1}, "CopySourceVersionId": "x"}),
    case("s3", "CreateMultipartUpload", {
        "Bucket": "bkt", "Key": KEY, "ContentType": "image/png", "Metadata": {"a": "1"},
        "ChecksumAlgorithm": "SHA256",
    }, output={"Bucket": "bkt", "Key": KEY, "UploadId": "upload/id+=="}),
    case("s3", "CompleteMultipartUpload", {
        "Bucket": "bkt", "Key": KEY, "UploadId": "u1",
        "MultipartUpload": {"Parts": [
            {"ETag": '"e1"', "PartNumber": 1}, {"ETag": '"e2"', "PartNumber": 2},
        ]},
    }, output={"Location": "http://x/bkt/k", "Bucket": "bkt", "Key": KEY, "ETag": '"e-2"'}),
    case("s3", "AbortMultipartUpload", {"Bucket": "bkt", "Key": KEY, "UploadId": "u1"}),
    case("s3", "ListParts", {
        "Bucket": "bkt", "Key": KEY, "UploadId": "u1", "MaxParts": 2, "PartNumberMarker": 1,
    }, output={
        "Bucket": "bkt", "Key": KEY, "UploadId": "u1", "PartNumberMarker": 1,
        "NextPartNumberMarker": 3, "MaxParts": 2, "IsTruncated": True,
        "Parts": [{"PartNumber": 2, "LastModified": T2, "ETag": '"e2"', "Size": 5},
                  {"PartNumber": 3, "LastModified": T2, "ETag": '"e3"', "Size": 6}],
        "Initiator": {"ID": "i", "DisplayName": "me"}, "Owner": OWNER,
        "StorageClass": "STANDARD",
    }),
    case("s3", "ListMultipartUploads", {"Bucket": "bkt", "Prefix": "a", "MaxUploads": 5,
                                         "EncodingType": "url"}, output={
        "Bucket": "bkt", "MaxUploads": 5, "IsTruncated": False,
        "Uploads": [{"UploadId": "u1", "Key": KEY, "Initiated": T1, "Owner": OWNER}],
        "CommonPrefixes": [{"Prefix": "a/"}],
    }),
    case("s3", "ListObjectsV2", {
        "Bucket": "bkt", "Prefix": "a b/", "Delimiter": "/", "MaxKeys": 5,
        "ContinuationToken": "tok+/=", "StartAfter": "ü", "FetchOwner": True,
        "EncodingType": "url", "OptionalObjectAttributes": ["RestoreStatus"],
    }, output={
        "Name": "bkt", "Prefix": "a b/", "Delimiter": "/", "MaxKeys": 5, "KeyCount": 2,
        "IsTruncated": True, "NextContinuationToken": "next+/=", "ContinuationToken": "tok",
        "Contents": [S3_OBJECT, {**S3_OBJECT, "Key": "<&>\"'", "Size": 0},
                     {**S3_OBJECT, "Key": "cr\r lf\n crlf\r\n tab\t"}],
        "CommonPrefixes": [{"Prefix": "a b/c/"}, {"Prefix": "a b/d/"}],
    }),
    case("s3", "ListObjects", {  # a header list item with a comma is sent quoted
        "Bucket": "bkt", "EncodingType": "url",
        "OptionalObjectAttributes": ["RestoreStatus", 'odd,"one"', "x"],
    }),
    case("s3", "ListObjects", {
        "Bucket": "bkt", "Marker": "m", "MaxKeys": 1000, "EncodingType": "url",
    }, output={
        "Name": "bkt", "Marker": "m", "NextMarker": "n", "MaxKeys": 1000, "IsTruncated": True,
        "Contents": [S3_OBJECT],
    }),
    case("s3", "ListObjectVersions", {"Bucket": "bkt", "KeyMarker": "k",
                                       "VersionIdMarker": "v", "EncodingType": "url"}, output={
        "Name": "bkt", "IsTruncated": False, "KeyMarker": "k",
        "Versions": [{"Key": "a", "VersionId": "2", "IsLatest": True, "LastModified": T1,
                      "ETag": '"e"', "Size": 1, "StorageClass": "STANDARD", "Owner": OWNER}],
        "DeleteMarkers": [{"Key": "b", "VersionId": "3", "IsLatest": False, "LastModified": T2,
                           "Owner": OWNER}],
    }),
    case("s3", "DeleteObjects", {"Bucket": "bkt", "Delete": {
        "Objects": [{"Key": KEY, "VersionId": "v1"}, {"Key": "ü/ä"},
                    {"Key": "t", "LastModifiedTime": T1, "Size": 3}],
        "Quiet": False,
    }}, injected={"ChecksumAlgorithm": "CRC32"}, output={
        "Deleted": [{"Key": KEY, "VersionId": "v1", "DeleteMarker": True,
                     "DeleteMarkerVersionId": "dm"}, {"Key": "ü/ä"}],
        "Errors": [{"Key": "t", "Code": "AccessDenied", "Message": "Access <Denied> & co"}],
    }),
    case("s3", "DeleteObject", {"Bucket": "bkt", "Key": KEY, "VersionId": "v1"},
         output={"DeleteMarker": True, "VersionId": "v1"}),
    case("s3", "CreateBucket", {
        "Bucket": "new-bkt", "ACL": "private", "ObjectLockEnabledForBucket": True,
        "CreateBucketConfiguration": {
            "LocationConstraint": "eu-west-1", "Tags": [{"Key": "team", "Value": "ml"}],
        },
    }, output={"Location": "/new-bkt"}),
    case("s3", "ListBuckets", {"MaxBuckets": 10, "Prefix": "b", "ContinuationToken": "c"},
         output={
             "Buckets": [{"Name": "bkt", "CreationDate": T1, "BucketRegion": "us-east-1"},
                         {"Name": "b2", "CreationDate": T2}],
             "Owner": {"ID": "o", "DisplayName": "me"}, "ContinuationToken": "next",
             "Prefix": "b",
         }),
    case("s3", "PutBucketTagging", {"Bucket": "bkt", "Tagging": {"TagSet": [
        {"Key": "a", "Value": "1"}, {"Key": "ü & <x>", "Value": ""},
    ]}}, injected={"ChecksumAlgorithm": "CRC32"}),
    case("s3", "GetBucketTagging", {"Bucket": "bkt"}, output={"TagSet": [
        {"Key": "a", "Value": "1"}, {"Key": "ü & <x>", "Value": ""},
    ]}),
    case("s3", "PutObjectTagging", {"Bucket": "bkt", "Key": KEY, "VersionId": "v",
                                    "Tagging": {"TagSet": [{"Key": "k", "Value": "v"}]}},
         injected={"ChecksumAlgorithm": "CRC32"}, output={"VersionId": "v"}),
    case("s3", "GetObjectTagging", {"Bucket": "bkt", "Key": KEY},
         output={"VersionId": "v", "TagSet": [{"Key": "k", "Value": "v"}]}),
    case("s3", "GetBucketAcl", {"Bucket": "bkt"}, output={
        "Owner": OWNER,
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": "abc", "DisplayName": "me"},
             "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
             "Permission": "READ"},
        ],
    }),
    case("s3", "PutBucketAcl", {"Bucket": "bkt", "AccessControlPolicy": {
        "Owner": OWNER,
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": "abc"}, "Permission": "READ"},
            {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "a@b.c"},
             "Permission": "WRITE_ACP"},
        ],
    }}, injected={"ChecksumAlgorithm": "CRC32"}),
    case("s3", "PutObjectAcl", {"Bucket": "bkt", "Key": KEY, "ACL": "public-read",
                                "GrantRead": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'},
         injected={"ChecksumAlgorithm": "CRC32"}),
    case("s3", "PutObject", {  # header names are case-insensitive: S3 keeps them lower-case
        "Bucket": "bkt", "Key": "k", "Metadata": {"Mixed-Case": "Value"},
    }, injected={"Metadata": {"mixed-case": "Value"}, "Body": b"", "ContentLength": 0}),
    case("s3", "PutBucketVersioning", {
        "Bucket": "bkt", "VersioningConfiguration": {"Status": "Enabled", "MFADelete": "Disabled"},
    }, injected={"ChecksumAlgorithm": "CRC32"}),
    case("s3", "GetBucketVersioning", {"Bucket": "bkt"},
         output={"Status": "Suspended", "MFADelete": "Disabled"}),
    case("s3", "PutBucketLifecycleConfiguration", {
        "Bucket": "bkt", "LifecycleConfiguration": {"Rules": [{
            "ID": "r1", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
            "Expiration": {"Date": datetime(2030, 1, 1, tzinfo=UTC)},
            "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        }]},
    }, injected={"ChecksumAlgorithm": "CRC32"}),
    case("s3", "GetBucketLifecycleConfiguration", {"Bucket": "bkt"}, output={"Rules": [{
        "ID": "r1", "Status": "Enabled", "Filter": {"And": {
            "Prefix": "p/", "Tags": [{"Key": "a", "Value": "b"}], "ObjectSizeGreaterThan": 10,
        }},
        "Expiration": {"Days": 3, "ExpiredObjectDeleteMarker": False},
        "NoncurrentVersionTransitions": [{"NoncurrentDays": 1, "StorageClass": "GLACIER"}],
    }]}),
    case("s3", "PutBucketCors", {"Bucket": "bkt", "CORSConfiguration": {"CORSRules": [{
        "AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["*"],
        "AllowedHeaders": ["x-a", "x-b"], "MaxAgeSeconds": 60, "ID": "c",
    }]}}, injected={"ChecksumAlgorithm": "CRC32"}),
    case("s3", "GetBucketCors", {"Bucket": "bkt"}, output={"CORSRules": [
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["https://a", "https://b"],
         "ExposeHeaders": ["ETag"]},
        {"AllowedMethods": ["PUT"], "AllowedOrigins": ["*"]},
    ]}),
    case("s3", "PutBucketPolicy", {"Bucket": "bkt", "Policy": '{"Version": "2012-10-17 <&>"}'},
         injected={"ChecksumAlgorithm": "CRC32"}),
    case("s3", "GetBucketPolicy", {"Bucket": "bkt"}, output={"Policy": '{"Statement": []}'}),
    case("s3", "GetObjectAttributes", {
        "Bucket": "bkt", "Key": KEY, "ObjectAttributes": ["ETag", "ObjectSize", "ObjectParts"],
        "MaxParts": 5, "PartNumberMarker": 0,
    }, output={
        "ETag": "abc", "ObjectSize": 10, "LastModified": T1, "VersionId": "v",
        "ObjectParts": {"TotalPartsCount": 2, "IsTruncated": False, "MaxParts": 5,
                        "Parts": [{"PartNumber": 1, "Size": 5}, {"PartNumber": 2, "Size": 5}]},
    }),
    case("s3", "GetObjectRetention", {"Bucket": "bkt", "Key": KEY},
         output={"Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": T2}}),
    # ------------------------------------------------------------ lambda (rest-json)
    case("lambda", "CreateFunction", {
        "FunctionName": "fn", "Runtime": "python3.12", "Role": "arn:aws:iam::1:role/r",
        "Handler": "app.handler", "Code": {"ZipFile": b"PK\x03\x04\x00\xff"},
        "Environment": {"Variables": {"A": "1", "B": "ü"}}, "Timeout": 30, "MemorySize": 512,
        "Publish": True, "Tags": {"team": "ml"}, "Layers": ["arn:l:1", "arn:l:2"],
        "Architectures": ["arm64"], "EphemeralStorage": {"Size": 1024},
    }, output={
        "FunctionName": "fn", "FunctionArn": "arn:aws:lambda:us-east-1:1:function:fn",
        "Runtime": "python3.12", "CodeSize": 5 * 1024**3, "Timeout": 30, "MemorySize": 512,
        "LastModified": "2024-01-01T00:00:00.000+0000", "State": "Pending",
        "Environment": {"Variables": {"A": "1"}}, "Architectures": ["arm64"],
        "Layers": [{"Arn": "arn:l:1", "CodeSize": 3}],
    }),
    case("lambda", "Invoke", {
        "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:fn",
        "InvocationType": "RequestResponse", "LogType": "Tail",
        "ClientContext": "eyJjdXN0b20iOnt9fQ==", "Qualifier": "$LATEST",
        "Payload": b'{"key": "v\\u00fc"}',
    }, output={
        "StatusCode": 200, "FunctionError": "Unhandled", "LogResult": "bG9n",
        "ExecutedVersion": "$LATEST", "Payload": b'{"errorMessage": "boom"}',
    }),
    case("lambda", "Invoke", {"FunctionName": "fn", "InvocationType": "Event"},
         output={"StatusCode": 202}, derived={"Payload": b""}, status=202),
    case("lambda", "ListFunctions", {
        "MasterRegion": "ALL", "FunctionVersion": "ALL", "Marker": "m+/=", "MaxItems": 10,
    }, output={"Functions": [{"FunctionName": "a"}, {"FunctionName": "b"}], "NextMarker": "n"}),
    case("lambda", "GetFunction", {"FunctionName": "arn:aws:lambda:us-east-1:1:function:fn:7",
                                   "Qualifier": "7"}, output={
        "Configuration": {"FunctionName": "fn", "Version": "7"},
        "Code": {"Location": "https://x/y?a=b&c=d", "RepositoryType": "S3"},
        "Tags": {"a": "b"}, "Concurrency": {"ReservedConcurrentExecutions": 5},
    }),
    case("lambda", "TagResource", {"Resource": "arn:aws:lambda:us-east-1:1:function:fn",
                                   "Tags": {"a": "b", "c d": "e/f"}}),
    case("lambda", "UntagResource", {"Resource": "arn:aws:lambda:us-east-1:1:function:fn",
                                     "TagKeys": ["a", "c d", "e&f"]}),
    case("lambda", "ListDurableExecutionsByFunction", {
        "FunctionName": "fn", "StartedAfter": T1, "StartedBefore": T2, "ReverseOrder": True,
        "Statuses": ["RUNNING", "SUCCEEDED"], "MaxItems": 3,
    }),
    case("lambda", "RemovePermission", {"FunctionName": "fn", "StatementId": "s/1 2",
                                        "Qualifier": "q", "RevisionId": "r"}),
    case("lambda", "UpdateFunctionCode", {"FunctionName": "fn", "ZipFile": b"\x00" * 64,
                                          "Publish": False, "DryRun": True},
         output={"FunctionName": "fn", "CodeSha256": "abc=", "Version": "$LATEST"}),
    # ------------------------------------------------------------ sagemaker-runtime
    case("sagemaker-runtime", "InvokeEndpoint", {
        "EndpointName": "ep", "Body": b"1,2,3", "ContentType": "text/csv", "Accept": "*/*",
        "CustomAttributes": "c=1", "TargetVariant": "v1", "InferenceId": "i",
    }, output={
        "Body": b'{"p": 0.5}', "ContentType": "application/json",
        "InvokedProductionVariant": "v1", "CustomAttributes": "x",
    }),
    # ------------------------------------------------------------ batch (rest-json)
    case("batch", "SubmitJob", {
        "jobName": "job-1", "jobQueue": "q", "jobDefinition": "jd:3",
        "parameters": {"input": "s3://b/k", "n": "10"},
        "arrayProperties": {"size": 100},
        "dependsOn": [{"jobId": "j0", "type": "N_TO_N"}],
        "containerOverrides": {
            "command": ["python", "-c", "print('ü')"],
            "environment": [{"name": "A", "value": "1"}],
            "resourceRequirements": [{"type": "GPU", "value": "1"}],
        },
        "retryStrategy": {"attempts": 3, "evaluateOnExit": [
            {"onStatusReason": "Host*", "action": "RETRY"}]},
        "propagateTags": True, "timeout": {"attemptDurationSeconds": 600},
        "tags": {"k": "v"}, "schedulingPriorityOverride": 0, "shareIdentifier": "s",
    }, output={"jobArn": "arn:aws:batch:us-east-1:1:job/j", "jobName": "job-1", "jobId": "j"}),
    case("batch", "DescribeJobs", {"jobs": ["a", "b"]}, output={"jobs": [{
        "jobName": "job-1", "jobId": "a", "jobQueue": "q", "status": "SUCCEEDED",
        "createdAt": 1700000000123, "startedAt": 1700000001000, "stoppedAt": 1700000002000,
        "jobDefinition": "jd:3", "parameters": {"a": "b"}, "isCancelled": False,
        "container": {"command": ["x"], "exitCode": 0, "vcpus": 2,
                      "environment": [{"name": "A", "value": "1"}]},
        "attempts": [{"container": {"exitCode": 0, "logStreamName": "ls"},
                      "startedAt": 1, "stoppedAt": 2, "statusReason": "done"}],
        "arrayProperties": {"statusSummary": {"SUCCEEDED": 3}, "size": 3},
    }]}),
    case("batch", "ListJobs", {"jobQueue": "q", "jobStatus": "RUNNING", "maxResults": 50,
                               "nextToken": "t", "filters": [{"name": "JOB_NAME",
                                                              "values": ["a*"]}]},
         output={"jobSummaryList": [{"jobId": "a", "jobName": "n", "createdAt": 1,
                                     "status": "RUNNING", "container": {"exitCode": 1}}],
                 "nextToken": "t2"}),
    case("batch", "CreateComputeEnvironment", {
        "computeEnvironmentName": "ce", "type": "MANAGED", "state": "ENABLED",
        "computeResources": {
            "type": "EC2", "minvCpus": 0, "maxvCpus": 256, "instanceTypes": ["optimal"],
            "subnets": ["s1", "s2"], "securityGroupIds": ["sg"], "bidPercentage": 50,
            "tags": {"a": "b"}, "ec2Configuration": [{"imageType": "ECS_AL2_NVIDIA"}],
        },
        "serviceRole": "arn:role",
    }, output={"computeEnvironmentName": "ce", "computeEnvironmentArn": "arn:ce"}),
    case("batch", "RegisterJobDefinition", {
        "jobDefinitionName": "jd", "type": "container",
        "containerProperties": {
            "image": "busybox", "command": ["echo", "hi"], "privileged": False,
            "readonlyRootFilesystem": True, "resourceRequirements": [
                {"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "512"}],
            "linuxParameters": {"sharedMemorySize": 64, "tmpfs": [
                {"containerPath": "/tmp", "size": 10, "mountOptions": ["rw"]}]},
        },
        "timeout": {"attemptDurationSeconds": 60}, "platformCapabilities": ["EC2"],
    }, output={"jobDefinitionName": "jd", "jobDefinitionArn": "arn:jd:1", "revision": 1}),
    case("batch", "UntagResource", {"resourceArn": "arn:aws:batch:us-east-1:1:job/x",
                                    "tagKeys": ["a", "b c"]}),
    case("batch", "ListTagsForResource", {"resourceArn": "arn:aws:batch:us-east-1:1:job/x"},
         output={"tags": {"a": "b"}}),
    # ------------------------------------------------------------ stepfunctions (json 1.0)
    case("stepfunctions", "CreateStateMachine", {
        "name": "sm", "definition": '{"StartAt": "A", "States": {"A": {"Type": "Pass", '
                                    '"End": true}}}',
        "roleArn": ROLE, "type": "STANDARD",
        "loggingConfiguration": {"level": "ALL", "includeExecutionData": True, "destinations": [
            {"cloudWatchLogsLogGroup": {"logGroupArn": "arn:lg"}}]},
        "tags": [{"key": "k", "value": "v"}], "tracingConfiguration": {"enabled": False},
    }, output={"stateMachineArn": "arn:sm", "creationDate": T2, "stateMachineVersionArn": "v"}),
    case("stepfunctions", "StartExecution", {"stateMachineArn": "arn:sm", "name": "e1",
                                             "input": '{"a": [1, 2]}', "traceHeader": "t"},
         output={"executionArn": "arn:ex", "startDate": T2}),
    case("stepfunctions", "DescribeExecution", {"executionArn": "arn:ex"}, output={
        "executionArn": "arn:ex", "stateMachineArn": "arn:sm", "name": "e1",
        "status": "SUCCEEDED", "startDate": T1, "stopDate": T2, "input": "{}",
        "output": '{"r": 1}', "inputDetails": {"included": True}, "redriveCount": 0,
    }),
    case("stepfunctions", "GetExecutionHistory", {
        "executionArn": "arn:ex", "maxResults": 100, "reverseOrder": True,
        "includeExecutionData": False, "nextToken": "n",
    }, output={"events": [
        {"timestamp": T2, "type": "ExecutionStarted", "id": 1, "previousEventId": 0,
         "executionStartedEventDetails": {"input": "{}", "roleArn": ROLE}},
        {"timestamp": T2, "type": "TaskFailed", "id": 2 ** 40, "previousEventId": 1,
         "taskFailedEventDetails": {"resourceType": "lambda", "resource": "invoke",
                                    "error": "E", "cause": "c"}},
    ]}),
    case("stepfunctions", "SendTaskFailure", {"taskToken": "t" * 100, "error": "E",
                                              "cause": "ü"}),
    case("stepfunctions", "ListExecutions", {"stateMachineArn": "arn:sm",
                                             "statusFilter": "RUNNING"},
         output={"executions": [{"executionArn": "a", "stateMachineArn": "s", "name": "n",
                                 "status": "RUNNING", "startDate": T1, "itemCount": 3}]}),
    # ------------------------------------------------------------ logs (json 1.1)
    case("logs", "PutLogEvents", {
        "logGroupName": "/aws/batch/job", "logStreamName": "a/b/c",
        "logEvents": [{"timestamp": 1700000000123, "message": "hello\nworld ü"},
                      {"timestamp": 1700000000124, "message": " "}],
    }, output={"nextSequenceToken": "t", "rejectedLogEventsInfo": {
        "tooNewLogEventStartIndex": 1, "expiredLogEventEndIndex": 0}}),
    case("logs", "GetLogEvents", {"logGroupName": "g", "logStreamName": "s",
                                  "startTime": 0, "endTime": 1700000000000,
                                  "startFromHead": True, "limit": 10000},
         output={"events": [{"timestamp": 1, "message": "m", "ingestionTime": 2}],
                 "nextForwardToken": "f/1", "nextBackwardToken": "b/1"}),
    case("logs", "FilterLogEvents", {"logGroupName": "g", "logStreamNames": ["a", "b"],
                                     "filterPattern": '{ $.level = "ERROR" }',
                                     "startTime": 1, "unmask": False},
         output={"events": [{"logStreamName": "a", "timestamp": 1, "message": "m",
                             "eventId": "e"}],
                 "searchedLogStreams": [{"logStreamName": "a", "searchedCompletely": True}]}),
    case("logs", "CreateLogGroup", {"logGroupName": "g", "tags": {"a": "b"},
                                    "logGroupClass": "STANDARD"}),
    case("logs", "DescribeLogGroups", {"logGroupNamePrefix": "/aws", "limit": 5},
         output={"logGroups": [{"logGroupName": "/aws/x", "creationTime": 1700000000000,
                                "retentionInDays": 7, "storedBytes": 2 ** 40,
                                "arn": "arn:lg:*"}]}),
    # ------------------------------------------------------------ sagemaker (json 1.1)
    case("sagemaker", "CreateTrainingJob", {
        "TrainingJobName": "tj", "RoleArn": ROLE,
        "AlgorithmSpecification": {
            "TrainingImage": "img:latest", "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "loss", "Regex": "loss=([0-9.]+)"}],
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "HyperParameters": {"epochs": "10", "lr": "0.001"},
        "InputDataConfig": [{"ChannelName": "train", "ContentType": "text/csv", "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train/",
                             "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": "s3://b/out/"},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1,
                           "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "Environment": {"A": "1"}, "Tags": [{"Key": "k", "Value": "v"}],
        "EnableNetworkIsolation": False,
    }, output={"TrainingJobArn": "arn:tj"}),
    case("sagemaker", "DescribeTrainingJob", {"TrainingJobName": "tj"}, output={
        "TrainingJobName": "tj", "TrainingJobArn": "arn:tj", "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed", "CreationTime": T1, "TrainingStartTime": T2,
        "TrainingEndTime": T2, "BillableTimeInSeconds": 42,
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/out/model.tar.gz"},
        "FinalMetricDataList": [{"MetricName": "loss", "Value": 0.125, "Timestamp": T2}],
        "SecondaryStatusTransitions": [{"Status": "Starting", "StartTime": T1,
                                        "StatusMessage": "m"}],
        "HyperParameters": {"epochs": "10"},
        "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                           "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 1},
    }),
    case("sagemaker", "ListTrainingJobs", {"CreationTimeAfter": T1, "SortBy": "CreationTime",
                                           "MaxResults": 10, "StatusEquals": "InProgress"},
         output={"TrainingJobSummaries": [{
             "TrainingJobName": "tj", "TrainingJobArn": "a", "CreationTime": T2,
             "TrainingJobStatus": "InProgress"}]}),
    case("sagemaker", "CreateEndpointConfig", {  # JSON has no infinity: sent as a string
        "EndpointConfigName": "c", "ProductionVariants": [{
            "VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large", "InitialVariantWeight": float("inf")}],
    }, output={"EndpointConfigArn": "arn:c"}),
    case("sagemaker", "CreateFlowDefinition", {
        "FlowDefinitionName": "f", "OutputConfig": {"S3OutputPath": "s3://b/"},
        "RoleArn": ROLE, "HumanLoopConfig": {
            "WorkteamArn": "w", "HumanTaskUiArn": "h", "TaskTitle": "t",
            "TaskDescription": "d", "TaskCount": 1},
        "HumanLoopActivationConfig": {"HumanLoopActivationConditionsConfig": {
            "HumanLoopActivationConditions": '{"Conditions": [{"And": []}]}'}},
    }, output={"FlowDefinitionArn": "arn:f"}),
    # ------------------------------------------------------------ ecs (json 1.1)
    case("ecs", "RegisterTaskDefinition", {
        "family": "fam", "networkMode": "awsvpc", "cpu": "256", "memory": "512",
        "requiresCompatibilities": ["FARGATE"],
        "containerDefinitions": [{
            "name": "c", "image": "busybox", "cpu": 128, "memory": 256, "essential": True,
            "command": ["sh", "-c", "echo 'ü' && exit 0"],
            "environment": [{"name": "A", "value": "1"}],
            "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}],
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
            "healthCheck": {"command": ["CMD", "true"], "interval": 30, "retries": 3},
        }],
    }, output={"taskDefinition": {
        "taskDefinitionArn": "arn:td:1", "family": "fam", "revision": 1, "status": "ACTIVE",
        "registeredAt": T2, "containerDefinitions": [{"name": "c", "essential": True}],
    }}),
    case("ecs", "RunTask", {
        "cluster": "default", "taskDefinition": "fam:1", "count": 2, "launchType": "FARGATE",
        "clientToken": "tok-1", "enableExecuteCommand": False,
        "overrides": {"containerOverrides": [{"name": "c", "command": ["a"],
                                              "environment": [{"name": "B", "value": "2"}]}]},
        "networkConfiguration": {"awsvpcConfiguration": {
            "subnets": ["s"], "securityGroups": ["g"], "assignPublicIp": "ENABLED"}},
        "tags": [{"key": "k", "value": "v"}],
    }, output={"tasks": [{
        "taskArn": "arn:task", "lastStatus": "PROVISIONING", "createdAt": T2,
        "containers": [{"name": "c", "exitCode": 0, "lastStatus": "PENDING"}],
        "overrides": {"containerOverrides": [{"name": "c"}]},
    }], "failures": [{"arn": "x", "reason": "MISSING"}]}),
    case("ecs", "CreateService", {
        "serviceName": "svc", "taskDefinition": "fam", "desiredCount": 1,
        "deploymentConfiguration": {"lifecycleHooks": [{
            "hookTargetArn": "arn:fn", "roleArn": ROLE,
            "lifecycleStages": ["PRE_SCALE_UP"],
            "hookDetails": {"any": [1, "x", {"nested": True}], "n": None},
        }]},
    }, output={"service": {"serviceName": "svc", "desiredCount": 1, "createdAt": T1}}),
    # ------------------------------------------------------------ sts / iam (query)
    case("sts", "AssumeRole", {
        "RoleArn": "arn:aws:iam::123456789012:role/r", "RoleSessionName": "s@x.y",
        "DurationSeconds": 3600, "Policy": '{"Version": "2012-10-17", "a": "b&c=d+e"}',
        "PolicyArns": [{"arn": ROLE + "1"}, {"arn": ROLE + "2"}],
        "Tags": [{"Key": "k1", "Value": "v 1"}, {"Key": "k2", "Value": ""}],
        "TransitiveTagKeys": ["k1"], "ExternalId": "ext",
    }, output={
        "Credentials": {"AccessKeyId": "ASIA", "SecretAccessKey": "s/+=",
                        "SessionToken": "t" * 200, "Expiration": T2},
        "AssumedRoleUser": {"AssumedRoleId": "AROA:s", "Arn": "arn:sts"},
        "PackedPolicySize": 6, "SourceIdentity": "si",
    }),
    case("sts", "GetCallerIdentity", {}, output={
        "UserId": "AIDA", "Account": "123456789012", "Arn": "arn:aws:iam::123456789012:root"}),
    case("sts", "GetSessionToken", {"DurationSeconds": 900, "SerialNumber": "arn:aws:iam::1:mfa/u",
                                    "TokenCode": "123456"},
         output={"Credentials": {"AccessKeyId": "a", "SecretAccessKey": "b",
                                 "SessionToken": "c", "Expiration": T1}}),
    case("iam", "CreateRole", {
        "RoleName": "r", "Path": "/svc/", "Description": "ü & <desc>",
        "AssumeRolePolicyDocument": '{"Statement": [{"Effect": "Allow"}]}\n',
        "MaxSessionDuration": 7200, "Tags": [{"Key": "a", "Value": "b"}],
    }, output={"Role": {
        "Path": "/svc/", "RoleName": "r", "RoleId": "AROA", "Arn": "arn:r", "CreateDate": T1,
        "Tags": [{"Key": "a", "Value": "b"}],
        "MaxSessionDuration": 7200, "RoleLastUsed": {"LastUsedDate": T2, "Region": "r"},
    }}),
    case("iam", "CreateUser", {"UserName": "u", "Tags": []},
         output={"User": {"Path": "/", "UserName": "u", "UserId": "AIDA", "Arn": "arn:u",
                          "CreateDate": T2}}),
    case("iam", "ListRoles", {"PathPrefix": "/", "Marker": "m", "MaxItems": 2}, output={
        "Roles": [{"Path": "/", "RoleName": "a", "RoleId": "1", "Arn": "arn:a",
                   "CreateDate": T1},
                  {"Path": "/", "RoleName": "b", "RoleId": "2", "Arn": "arn:b",
                   "CreateDate": T2}],
        "IsTruncated": True, "Marker": "next",
    }),
    case("iam", "ListRoles", {}, output={"Roles": [], "IsTruncated": False}),
    case("iam", "GetAccountSummary", {}, output={"SummaryMap": {"Users": 3, "Roles": 10}}),
    case("iam", "CreatePolicyVersion", {"PolicyArn": ROLE, "PolicyDocument": "{}",
                                        "SetAsDefault": True},
         output={"PolicyVersion": {"VersionId": "v2", "IsDefaultVersion": True,
                                   "CreateDate": T1}}),
    case("iam", "ListAttachedRolePolicies", {"RoleName": "r"}, output={
        "AttachedPolicies": [{"PolicyName": "p", "PolicyArn": "arn:p"}], "IsTruncated": False}),
    # ------------------------------------------------------------ other query models
    # Not served by kobako, but their models use query features IAM and STS do not:
    # `entry.N` maps with renamed key/value, and list members with a locationName.
    case("sns", "CreateTopic", {"Name": "t", "Attributes": {"DisplayName": "d ü",
                                                            "Policy": "{}"},
                                "Tags": [{"Key": "k", "Value": "v"}]},
         output={"TopicArn": "arn:sns:t"}),
    case("sns", "Publish", {"TopicArn": "arn:t", "Message": "m", "MessageAttributes": {
        "a": {"DataType": "String", "StringValue": "1"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}},
         output={"MessageId": "id"}),
    case("sns", "GetTopicAttributes", {"TopicArn": "arn:t"},
         output={"Attributes": {"Owner": "1", "Policy": "{}"}}),
    case("sdb", "BatchPutAttributes", {"DomainName": "d", "Items": [
        {"Name": "i1", "Attributes": [{"Name": "a", "Value": "1", "Replace": True},
                                      {"Name": "b", "Value": "2"}]},
        {"Name": "i2", "Attributes": [{"Name": "c", "Value": "3"}]}]}),
    case("sdb", "GetAttributes", {"DomainName": "d", "ItemName": "i",
                                  "AttributeNames": ["a", "b"], "ConsistentRead": True},
         output={"Attributes": [{"Name": "a", "Value": "1"}, {"Name": "b", "Value": "2"}]}),
    case("rds", "DescribeDBInstances", {"Filters": [
        {"Name": "engine", "Values": ["postgres", "mysql"]}]}, output={
        "DBInstances": [{"DBInstanceIdentifier": "db", "VpcSecurityGroups": [
            {"VpcSecurityGroupId": "sg", "Status": "active"}]}]}),
    case("rds", "CreateDBInstance", {"DBInstanceIdentifier": "db", "DBInstanceClass": "c",
                                     "Engine": "postgres",
                                     "VpcSecurityGroupIds": ["sg1", "sg2"]},
         output={"DBInstance": {"DBInstanceIdentifier": "db"}}),
    # Other rest-json models: `jsonvalue` headers (base64 JSON) both ways, and
    # querystring maps, which take every key but the requestUri's own (`mode`).
    case("lex-runtime", "PostContent", {
        "botName": "b", "botAlias": "$LATEST", "userId": "u 1",
        "sessionAttributes": {"a": "1", "nested": {"ü": [1, 2]}},
        "requestAttributes": {"r": "x"}, "contentType": "text/plain; charset=utf-8",
        "accept": "text/plain; charset=utf-8", "inputStream": b"hello",
    }, injected={"inputStream": b"hello"}, output={
        "contentType": "text/plain", "intentName": "Order", "dialogState": "Fulfilled",
        "sessionAttributes": {"a": "1"}, "slots": {"size": "large", "n": None},
        "audioStream": b"",
    }),
    case("apigateway", "ImportRestApi", {
        "failOnWarnings": True, "body": b'{"openapi": "3.0.1"}',
        "parameters": {"endpointConfigurationTypes": "REGIONAL", "ignore": "documentation"},
    }, output={"id": "api", "name": "n", "createdDate": T1, "tags": {"a": "b"}}),
    case("amp", "ListScrapers", {"filters": {"status": ["ACTIVE", "CREATING"], "alias": ["x"]},
                                 "maxResults": 5}, output={"scrapers": [], "nextToken": "n"}),
]


# ---------------------------------------------------------------- requests


@pytest.mark.parametrize("c", CASES)
def test_request_parses_to_the_callers_params(c: Case) -> None:
    seen = exchange(c.service, c.operation, c.params, c.output or {})
    assert seen.operation == c.operation
    expected = {**c.params, **c.injected}
    assert seen.params == expected


# ---------------------------------------------------------------- responses


def _expected_status(c: Case) -> int:
    if c.status is not None:
        return c.status
    op = service_model(c.service).operation_model(c.operation)
    return int(op.http.get("responseCode", 200))


@pytest.mark.parametrize("c", [p for p in CASES if p.values[0].output is not None])
def test_response_reads_back_what_kobako_wrote(c: Case) -> None:
    assert c.output is not None
    output = dict(c.output)
    op = service_model(c.service).operation_model(c.operation)
    members = op.output_shape.members.values() if op.output_shape else []
    if c.status is not None and all(m.serialization.get("location") != "statusCode"
                                    for m in members):
        output["__status"] = c.status  # how a handler picks the status (206 for a range)
    seen = exchange(c.service, c.operation, c.params, output)
    assert seen.error is None, seen.error
    result = dict(seen.result)
    assert result.pop("__status") == _expected_status(c)
    request_id = result.pop("__request_id")
    assert request_id == REQUEST_ID
    assert result == {**c.output, **c.derived}


def test_streaming_response_body_from_an_async_iterator() -> None:
    async def pieces() -> Any:
        for piece in (b"abc", b"", b"def"):
            yield piece

    seen = exchange("s3", "GetObject", {"Bucket": "b", "Key": "k"},
                    {"Body": pieces(), "ContentLength": 6, "Metadata": {}})
    assert seen.result["Body"] == b"abcdef"


# ---------------------------------------------------------------- errors


ERROR_CASES = [
    pytest.param("s3", "GetObject", {"Bucket": "b", "Key": KEY},
                 AwsError("NoSuchKey", "The specified key does not exist.", 404,
                          fields={"Key": KEY}), id="s3-nosuchkey"),
    pytest.param("s3", "DeleteBucket", {"Bucket": "b"},
                 AwsError("BucketNotEmpty", "Not <empty> & full", 409,
                          fields={"BucketName": "b"}), id="s3-bucketnotempty"),
    pytest.param("s3", "PutObject", {"Bucket": "b", "Key": "k", "Body": b"x"},
                 AwsError("SlowDown", "Reduce your request rate.", 503, sender_fault=False),
                 id="s3-slowdown"),
    pytest.param("lambda", "GetFunction", {"FunctionName": "fn"},
                 AwsError("ResourceNotFoundException", "Function not found: arn:fn", 404,
                          fields={"Type": "User"}), id="lambda-notfound"),
    pytest.param("lambda", "Invoke", {"FunctionName": "fn"},
                 AwsError("TooManyRequestsException", "Rate exceeded", 429,
                          fields={"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                                  "Type": "User"}), id="lambda-throttle"),
    pytest.param("batch", "SubmitJob", {"jobName": "j", "jobQueue": "q", "jobDefinition": "d"},
                 AwsError("ClientException", "Job queue q does not exist.", 400),
                 id="batch-client"),
    pytest.param("stepfunctions", "DescribeExecution", {"executionArn": "arn:x"},
                 AwsError("ExecutionDoesNotExist", "Execution Does Not Exist: 'arn:x'", 400),
                 id="sfn-notexist"),
    pytest.param("logs", "CreateLogGroup", {"logGroupName": "g"},
                 AwsError("ResourceAlreadyExistsException", "The specified log group already "
                          "exists", 400), id="logs-exists"),
    pytest.param("sagemaker", "DescribeTrainingJob", {"TrainingJobName": "tj"},
                 AwsError("ResourceNotFound", "Requested resource not found.", 400),
                 id="sagemaker-notfound"),
    pytest.param("ecs", "RunTask", {"taskDefinition": "td", "clientToken": "t"},
                 AwsError("ClusterNotFoundException", "Cluster not found.", 400),
                 id="ecs-cluster"),
    pytest.param("ecs", "RunTask", {"taskDefinition": "td", "clientToken": "t"},
                 AwsError("ServerException", "Internal", 500, sender_fault=False),
                 id="ecs-server"),
    pytest.param("iam", "GetRole", {"RoleName": "r"},
                 AwsError("NoSuchEntity", "The role with name r cannot be found & <x>.", 404),
                 id="iam-nosuchentity"),
    pytest.param("sts", "AssumeRole", {"RoleArn": ROLE, "RoleSessionName": "s1"},
                 AwsError("AccessDenied", "Not authorized to perform sts:AssumeRole", 403),
                 id="sts-accessdenied"),
]


@pytest.mark.parametrize(("service", "operation", "params", "error"), ERROR_CASES)
def test_error_reads_back(service: str, operation: str, params: dict[str, Any],
                          error: AwsError) -> None:
    seen = exchange(service, operation, params, error=error)
    assert seen.operation == operation
    assert seen.error is not None
    response = seen.error.response
    assert response["Error"]["Code"] == error.code
    assert response["Error"]["Message"] == error.message
    assert response["ResponseMetadata"]["HTTPStatusCode"] == error.status
    assert response["ResponseMetadata"]["RequestId"] == REQUEST_ID
    # S3 puts extra fields beside Code in <Error>; JSON services' modeled errors
    # carry them as members, which botocore lifts to the top of the response.
    where = response["Error"] if service == "s3" else response
    assert {name: where.get(name) for name in error.fields} == error.fields


def test_head_error_has_only_the_status() -> None:
    """HEAD answers carry no body, so botocore reads the code from the status."""
    seen = exchange("s3", "HeadObject", {"Bucket": "b", "Key": "k"},
                    error=AwsError("NoSuchKey", "gone", 404))
    assert seen.error is not None
    assert seen.error.response["Error"]["Code"] == "404"


def _generic_parse(service: str, response: HttpResponse) -> dict[str, Any]:
    """botocore's bare response parser, without a client (no modeled error shape)."""
    protocol = service_model(service).metadata["protocol"]
    body = asyncio.run(_body_bytes(response))
    headers = {k: v for k, v in response.headers}
    parsed = create_parser(protocol).parse(
        {"status_code": response.status, "headers": headers, "body": body}, None)
    return dict(parsed)


@pytest.mark.parametrize("service", ["s3", "lambda", "batch", "stepfunctions", "logs",
                                     "sagemaker", "ecs", "sts", "iam"])
def test_error_with_bare_parser(service: str) -> None:
    error = AwsError("ThrottlingException", "Rate exceeded <slow> & down", 400)
    parsed = _generic_parse(service, codec(service).serialize_error(error, REQUEST_ID))
    assert parsed["Error"]["Code"] == "ThrottlingException"
    assert parsed["Error"]["Message"] == "Rate exceeded <slow> & down"
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 400


# ---------------------------------------------------------------- routing


def _dummy(shape: Shape, name: str, depth: int = 0) -> Any:
    """A value for `shape` that the client will serialize; only required members."""
    kind = shape.type_name
    if kind == "structure":
        if depth > 6:
            return {}
        members = shape.required_members or list(shape.members)[:1]
        return {m: _dummy(shape.members[m], m, depth + 1) for m in members}
    if kind == "list":
        return [_dummy(shape.member, name, depth + 1)]
    if kind == "map":
        return {"k": _dummy(shape.value, name, depth + 1)}
    if kind in ("integer", "long"):
        return 1
    if kind in ("float", "double"):
        return 1.5
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return T1
    if kind == "blob":
        return b"x"
    if shape.enum:
        return shape.enum[0]
    if name == "Bucket":
        return "bkt"
    return name.lower() + "-1"


# Operations whose requests are byte-for-byte the same as another's: only the
# deprecated twin differs, and kobako must then pick the current one.
_WIRE_TWINS = {
    ("s3", "GetBucketLifecycle"): "GetBucketLifecycleConfiguration",
    ("s3", "PutBucketLifecycle"): "PutBucketLifecycleConfiguration",
    ("s3", "GetBucketNotification"): "GetBucketNotificationConfiguration",
    ("s3", "PutBucketNotification"): "PutBucketNotificationConfiguration",
    # Directory buckets (S3 Express) are told apart by the endpoint, not the request.
    ("s3", "ListDirectoryBuckets"): "ListBuckets",
}
_REST = [
    pytest.param(service, name, id=f"{service}.{name}")
    for service in ("s3", "lambda", "batch", "sagemaker-runtime")
    for name in service_model(service).operation_names
]


@pytest.mark.parametrize(("service", "operation"), _REST)
def test_every_rest_operation_routes_to_itself(service: str, operation: str) -> None:
    op = service_model(service).operation_model(operation)
    params = _dummy(op.input_shape, operation) if op.input_shape is not None else {}
    if service == "s3" and "CopySource" in params:
        params["CopySource"] = "src/key"
    seen = exchange(service, operation, params, parameter_validation=False)
    assert seen.operation == _WIRE_TWINS.get((service, operation), operation)


@pytest.mark.parametrize(("method", "target", "query", "headers", "expected"), [
    ("PUT", "/b/k", "", {}, "PutObject"),
    ("PUT", "/b/k", "", {"x-amz-copy-source": "s/k"}, "CopyObject"),
    ("PUT", "/b/k", "partNumber=1&uploadId=u", {}, "UploadPart"),
    ("PUT", "/b/k", "partNumber=1&uploadId=u", {"x-amz-copy-source": "s/k"}, "UploadPartCopy"),
    ("PUT", "/b/k", "tagging", {}, "PutObjectTagging"),
    ("PUT", "/b", "", {}, "CreateBucket"),
    ("PUT", "/b/", "", {}, "CreateBucket"),
    ("GET", "/b", "", {}, "ListObjects"),
    ("GET", "/b", "prefix=a&list-type=2", {}, "ListObjectsV2"),
    ("GET", "/b", "list-type=1", {}, "ListObjects"),
    ("GET", "/b", "acl", {}, "GetBucketAcl"),
    ("GET", "/b", "acl=", {}, "GetBucketAcl"),
    ("GET", "/b/k", "acl", {}, "GetObjectAcl"),
    ("GET", "/b", "versions&prefix=x", {}, "ListObjectVersions"),
    ("GET", "/b", "uploads", {}, "ListMultipartUploads"),
    ("GET", "/b", "location", {}, "GetBucketLocation"),
    ("GET", "/b", "analytics", {}, "ListBucketAnalyticsConfigurations"),
    ("GET", "/b", "analytics&id=x", {}, "GetBucketAnalyticsConfiguration"),
    ("GET", "/b", "lifecycle", {}, "GetBucketLifecycleConfiguration"),
    ("GET", "/b/k", "", {}, "GetObject"),
    ("GET", "/b/k", "uploadId=u", {}, "ListParts"),
    ("GET", "/b/k", "versionId=v&response-content-type=x", {}, "GetObject"),
    ("GET", "/", "", {}, "ListBuckets"),
    ("GET", "/", "max-directory-buckets=5", {}, "ListDirectoryBuckets"),
    ("HEAD", "/b", "", {}, "HeadBucket"),
    ("HEAD", "/b/", "", {}, "HeadBucket"),
    ("HEAD", "/b/k", "", {}, "HeadObject"),
    ("HEAD", "/b/dir/", "", {}, "HeadObject"),
    ("DELETE", "/b/k", "", {}, "DeleteObject"),
    ("DELETE", "/b/k", "uploadId=u", {}, "AbortMultipartUpload"),
    ("DELETE", "/b", "", {}, "DeleteBucket"),
    ("POST", "/b", "delete", {}, "DeleteObjects"),
    ("POST", "/b/k", "uploads", {}, "CreateMultipartUpload"),
    ("POST", "/b/k", "uploadId=u", {}, "CompleteMultipartUpload"),
    ("POST", "/b/k", "restore&versionId=v", {}, "RestoreObject"),
])
def test_s3_routing(method: str, target: str, query: str, headers: dict[str, str],
                    expected: str) -> None:
    request = HttpRequest(method, target, query, dict(headers), BodyStream.of_bytes(b""))
    op, labels = codec("s3").find_operation(request, target)
    assert op.name == expected
    bucket, _, key = target[1:].partition("/")
    assert labels == {**({"Bucket": bucket} if bucket else {}), **({"Key": key} if key else {})}


@pytest.mark.parametrize(("method", "target", "query"), [
    ("POST", "/b/k", ""),  # no operation POSTs to an object without a subresource
    ("PATCH", "/b/k", ""),
])
def test_s3_unroutable(method: str, target: str, query: str) -> None:
    request = HttpRequest(method, target, query, {}, BodyStream.of_bytes(b""))
    with pytest.raises(AwsError):
        codec("s3").find_operation(request, target)


def test_s3_labels_are_decoded_once() -> None:
    raw = "/bkt/" + quote(KEY, safe="/~") + "%2525"
    request = HttpRequest("GET", raw, "", {}, BodyStream.of_bytes(b""))
    op, labels = codec("s3").find_operation(request, raw)
    assert op.name == "GetObject"
    assert labels == {"Bucket": "bkt", "Key": KEY + "%25"}


@pytest.mark.parametrize(("target", "code"), [
    ("AWSStepFunctions.NoSuchOperation", "UnknownOperationException"),
    ("Logs_20140328.CreateLogGroup", "UnknownOperationException"),  # another service's
    ("AWSStepFunctions", "UnknownOperationException"),
    ("", "UnknownOperationException"),
])
def test_unknown_json_target(target: str, code: str) -> None:
    headers = {"x-amz-target": target} if target else {}
    request = HttpRequest("POST", "/", "", headers, BodyStream.of_bytes(b"{}"))
    with pytest.raises(AwsError) as caught:
        codec("stepfunctions").find_operation(request, "/")
    assert caught.value.code == code
    parsed = _generic_parse("stepfunctions",
                            codec("stepfunctions").serialize_error(caught.value, REQUEST_ID))
    assert parsed["Error"]["Code"] == code
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_unknown_query_action() -> None:
    request = HttpRequest("POST", "/", "Action=Nope&Version=2010-05-08", {},
                          BodyStream.of_bytes(b""))
    with pytest.raises(AwsError) as caught:
        codec("iam").find_operation(request, "/")
    parsed = _generic_parse("iam", codec("iam").serialize_error(caught.value, REQUEST_ID))
    assert parsed["Error"]["Code"] == "InvalidAction"


def test_query_action_in_the_form_body() -> None:
    """Clients POST the whole query, Action included, as a form body."""
    body = b"Action=GetCallerIdentity&Version=2011-06-15"
    request = HttpRequest("POST", "/", "", {"content-type": "application/x-www-form-urlencoded"},
                          BodyStream.of_bytes(body), body_bytes=body)
    op, _ = codec("sts").find_operation(request, "/")
    assert op.name == "GetCallerIdentity"


@pytest.mark.parametrize("body", [b"[]", b"not json", b'{"executionArn": 5}', b"\xff"])
def test_malformed_json_is_a_client_error(body: bytes) -> None:
    request = HttpRequest("POST", "/", "", {"x-amz-target": "AWSStepFunctions.DescribeExecution"},
                          BodyStream.of_bytes(body))
    the_codec = codec("stepfunctions")
    op, labels = the_codec.find_operation(request, "/")
    with pytest.raises(AwsError) as caught:
        asyncio.run(the_codec.parse(op, request, labels))
    assert caught.value.status == 400


# ---------------------------------------------------------------- scalars


@pytest.mark.parametrize("kind", [
    "string", "integer", "long", "short", "byte", "float", "double", "boolean", "timestamp",
    "blob", "structure", "list", "map",
])
def test_text_members_are_exactly_the_unconverted_kinds(kind: str) -> None:
    """Parsers skip `scalar_from_text` where `is_text` says so: it must give the text
    back unchanged for exactly those kinds (a converted kind gives another value, or
    refuses a text that is not one)."""
    shape = Shape("s", {"type": kind})
    text = "1"
    try:
        unchanged = values.scalar_from_text(text, shape) is text
    except AwsError:
        unchanged = False
    assert values.is_text(shape) == unchanged


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize("text", [
    "2025-01-02T03:04:05.678Z", "2025-01-02T03:04:05.678000Z", "2025-01-02T03:04:05.678+00:00",
    "1735787045.678", "Thu, 02 Jan 2025 03:04:05 GMT",
])
def test_timestamp_forms(text: str) -> None:
    parsed = parse_timestamp(text)
    assert parsed.tzinfo is not None
    assert parsed.replace(microsecond=0) == T2.replace(microsecond=0)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e300", "yesterday", ""])
def test_bad_timestamps_are_client_errors(text: str) -> None:
    with pytest.raises(AwsError) as caught:
        parse_timestamp(text)
    assert caught.value.status == 400


def test_naive_datetimes_are_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # a local time that is not UTC
    time.tzset()
    try:
        naive = datetime(2025, 1, 2, 3, 4, 5, 678000)
        assert format_timestamp(naive, "iso8601") == "2025-01-02T03:04:05.678Z"
        assert format_timestamp(naive, "rfc822") == "Thu, 02 Jan 2025 03:04:05 GMT"
        assert format_timestamp(naive, "unixTimestamp") == 1735787045.678
        # Epoch numbers and text are accepted where a handler has no datetime at hand.
        assert format_timestamp(1735787045.678, "iso8601") == "2025-01-02T03:04:05.678Z"
        assert format_timestamp("2025-01-02T03:04:05Z", "unixTimestamp") == 1735787045
    finally:
        monkeypatch.undo()
        time.tzset()
