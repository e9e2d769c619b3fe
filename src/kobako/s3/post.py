"""Browser uploads: POST Object with a signed policy (HTML forms, presigned POST).

The form is parsed as it streams (python-multipart); every field before `file` is
kept, and when the file part starts the signature and the policy are checked, before
a byte of the file is stored. The file itself streams into a blob like any PUT.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode
from xml.etree import ElementTree

from python_multipart.multipart import MultipartParser, parse_options_header

from kobako.protocol.codecs import XML_DECLARATION
from kobako.protocol.errors import AwsError
from kobako.protocol.http import HttpRequest, HttpResponse
from kobako.protocol.sigv4 import Credential
from kobako.s3 import errors, lock
from kobako.s3.access import authorize, object_acl
from kobako.s3.backend import S3Backend
from kobako.s3.names import check_key
from kobako.s3.store import ObjectRecord, now
from kobako.s3.tagging import MAX_OBJECT_TAGS, check_tags
from kobako.server.service import ANONYMOUS, RequestContext

MAX_FIELD = 64 * 1024
MAX_FIELDS_TOTAL = 1024 * 1024


def _denied(message: str) -> AwsError:
    return AwsError("AccessDenied", message, 403)


@dataclass
class _Form:
    fields: dict[str, str] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    value: bytearray = field(default_factory=bytearray)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, str] = field(default_factory=dict)
    total: int = 0


def _signing_key(secret: str, date: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _missing_field(name: str) -> AwsError:
    return AwsError("InvalidArgument", f"Bucket POST must contain a field named '{name}'.  "
                    "If it is specified, please check the order of the fields.", 400,
                    fields={"ArgumentName": name, "ArgumentValue": ""})


def _verify_signature(fields: dict[str, str], lookup: Any) -> Credential:
    """The form's signer; SigV4 (x-amz-*) or SigV2 (AWSAccessKeyId, signature)."""
    policy = fields.get("policy", "")
    if "x-amz-credential" in fields:
        if "x-amz-signature" not in fields:
            raise _missing_field("X-Amz-Signature")
        if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
            raise errors.invalid_argument("Only AWS4-HMAC-SHA256 is supported",
                                          "x-amz-algorithm", fields.get("x-amz-algorithm", ""))
        parts = fields["x-amz-credential"].split("/")
        if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
            raise errors.invalid_argument("Invalid credential", "x-amz-credential",
                                          fields["x-amz-credential"])
        user = lookup(parts[0])
        if user is None:
            raise AwsError("InvalidAccessKeyId", "The AWS Access Key Id you provided does not "
                           "exist in our records.", 403)
        key = _signing_key(user.secret_access_key, parts[1], parts[2])
        expected = hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()
        provided = fields.get("x-amz-signature", "")
    else:
        for name, shown in (("awsaccesskeyid", "AWSAccessKeyId"), ("signature", "Signature")):
            if name not in fields:
                raise _missing_field(shown)
        user = lookup(fields.get("awsaccesskeyid", ""))
        if user is None:
            raise AwsError("InvalidAccessKeyId", "The AWS Access Key Id you provided does not "
                           "exist in our records.", 403)
        expected = base64.b64encode(hmac.new(user.secret_access_key.encode(), policy.encode(),
                                             hashlib.sha1).digest()).decode()
        provided = fields.get("signature", "")
    if not hmac.compare_digest(expected, provided):
        raise AwsError("SignatureDoesNotMatch", "The request signature we calculated does not "
                       "match the signature you provided. Check your key and signing method.",
                       403)
    return user  # type: ignore[no-any-return]


def _invalid_policy(message: str) -> AwsError:
    return AwsError("InvalidPolicyDocument", f"Invalid Policy: {message}", 400)


# The policy's expiration: ISO 8601 in UTC, as AWS requires ("2007-12-01T12:00:00.000Z").
_EXPIRATION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z\Z")


def _check_policy(fields: dict[str, str], bucket: str) -> tuple[int, int]:
    """Check expiration and every condition; returns the content-length-range."""
    try:
        document = json.loads(base64.b64decode(fields.get("policy", ""), validate=True))
    except (ValueError, TypeError, binascii.Error):
        raise _invalid_policy("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise _invalid_policy("Invalid JSON.")
    if "expiration" not in document:
        raise _invalid_policy("Policy missing expiration.")
    text = document["expiration"]
    if not isinstance(text, str) or not _EXPIRATION.match(text):
        raise _invalid_policy("Invalid 'expiration' value: '" + str(text) + "'")
    expiration = datetime.fromisoformat(text.replace("Z", "+00:00"))
    conditions = document.get("conditions")
    if not isinstance(conditions, list):
        raise _invalid_policy("Policy missing conditions." if conditions is None
                              else "Invalid 'conditions' value: must be a List.")
    if expiration < datetime.now(UTC):
        raise _denied("Invalid according to Policy: Policy expired.")
    values = dict(fields, bucket=bucket)
    covered: set[str] = set()
    size_range = (0, 5 * 1024**3)
    for condition in conditions:
        if isinstance(condition, dict):
            if len(condition) != 1:
                raise _invalid_policy("Invalid Simple-Condition: Simple-Conditions must have "
                                      "exactly one property specified.")
            for name, wanted in condition.items():
                covered.add(name.lower())
                if values.get(name.lower()) != wanted:
                    raise _denied(f'Invalid according to Policy: Policy Condition failed: '
                                  f'["eq", "${name}", "{wanted}"]')
            continue
        if not isinstance(condition, list) or len(condition) != 3:
            raise AwsError("InvalidPolicyDocument", "Invalid Policy: Invalid condition.", 400)
        op = str(condition[0]).lower()
        if op == "content-length-range":
            size_range = (int(condition[1]), int(condition[2]))
            continue
        name = str(condition[1]).lstrip("$").lower()
        covered.add(name)
        actual = values.get(name, "")
        wanted = str(condition[2])
        ok = actual == wanted if op == "eq" else actual.startswith(wanted) \
            if op == "starts-with" else False
        if not ok:
            raise _denied(f'Invalid according to Policy: Policy Condition failed: '
                          f'["{op}", "${name}", "{wanted}"]')
    exempt = {"x-amz-signature", "file", "policy", "signature", "awsaccesskeyid", "bucket"}
    for name in fields:
        if name not in covered and name not in exempt and not name.startswith("x-ignore-"):
            raise _denied(f"Invalid according to Policy: Extra input fields: {name}")
    return size_range


def _tags_from_form(text: str | None) -> list[tuple[str, str]]:
    """The `tagging` form field: a <Tagging><TagSet><Tag> document, as PutObjectTagging takes."""
    if not text:
        return []
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        raise errors.malformed_xml() from None
    pairs = []
    for tag in root.iter():
        if tag.tag.rsplit("}", 1)[-1] != "Tag":
            continue
        parts = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in tag}
        pairs.append((parts.get("Key", ""), parts.get("Value", "")))
    return check_tags(pairs, MAX_OBJECT_TAGS)


class PostUploads:
    """The pre-auth hook that answers POST Object; None for every other request."""

    def __init__(self, s3: S3Backend, lookup: Any) -> None:
        self.s3 = s3
        self.lookup = lookup

    async def handle(self, request: HttpRequest, path: str) -> HttpResponse | None:
        content_type = request.headers.get("content-type", "")
        bucket_name = path.strip("/")
        if request.method != "POST" or "/" in bucket_name or not bucket_name or \
                not content_type.lower().startswith("multipart/form-data"):
            return None
        _, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if not boundary:
            raise AwsError("MalformedPOSTRequest", "The body of your POST request is not "
                           "well-formed multipart/form-data.", 400)
        bucket = self.s3.store.get_bucket(bucket_name)
        if bucket is None:
            raise errors.no_such_bucket(bucket_name)
        form = _Form()
        state: dict[str, Any] = {"writer": None, "md5": hashlib.md5(), "ctx": None}

        def on_part_begin() -> None:
            form.name, form.filename, form.headers = "", None, {}
            form.value.clear()

        def on_header_field(data: bytes, start: int, end: int) -> None:
            form.header_field += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            form.header_value += data[start:end]

        def on_header_end() -> None:
            form.headers[form.header_field.decode("latin-1").lower()] = \
                form.header_value.decode("latin-1")
            form.header_field.clear()
            form.header_value.clear()

        def on_headers_finished() -> None:
            _, params = parse_options_header(form.headers.get("content-disposition", ""))
            form.name = params.get(b"name", b"").decode().lower()
            if b"filename" in params:
                form.filename = params[b"filename"].decode()
            if form.name == "file":
                form.content_type = form.headers.get("content-type", "")
                state["ctx"] = self._authorize(request, bucket_name, form)
                state["writer"] = self.s3.store.writer_for(bucket_name)

        def on_part_data(data: bytes, start: int, end: int) -> None:
            piece = data[start:end]
            writer = state["writer"]
            if form.name == "file" and writer is not None:
                writer.write(piece)
                state["md5"].update(piece)
                return
            form.value += piece
            form.total += len(piece)
            if len(form.value) > MAX_FIELD or form.total > MAX_FIELDS_TOTAL:
                raise AwsError("MaxPostPreDataLengthExceededError", "Your POST request fields "
                               "preceeding the upload file was too large.", 400)

        def on_part_end() -> None:
            if form.name and form.name != "file" and state["writer"] is None:
                form.fields[form.name] = form.value.decode("utf-8", errors="replace")

        parser = MultipartParser(boundary, {
            "on_part_begin": on_part_begin, "on_part_data": on_part_data,
            "on_part_end": on_part_end, "on_header_field": on_header_field,
            "on_header_value": on_header_value, "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        })
        try:
            async for chunk in request.body:
                parser.write(chunk)
            parser.finalize()
            writer = state["writer"]
            if writer is None:
                raise AwsError("InvalidArgument", "POST requires exactly one file upload per "
                               "request.", 400, fields={"ArgumentName": "file"})
            low, high = state["ctx"].params["__size_range"]
            if writer.size < low:
                raise AwsError("EntityTooSmall", "Your proposed upload is smaller than the "
                               "minimum allowed size", 400)
            if writer.size > high:
                raise AwsError("EntityTooLarge", "Your proposed upload exceeds the maximum "
                               "allowed size", 400)
            blob_id = await asyncio.to_thread(writer.commit)
        except BaseException:
            if state["writer"] is not None:
                state["writer"].abort()
            raise
        return self._store(bucket_name, form, blob_id, state["writer"].size,
                           state["md5"].hexdigest(), request, state["ctx"].params["__acl"])

    def _authorize(self, request: HttpRequest, bucket: str, form: _Form) -> RequestContext:
        fields = form.fields
        key = fields.get("key")
        if not key:
            raise AwsError("InvalidArgument", "Bucket POST must contain a field named 'key'.  "
                           "If it is specified, please check the order of the fields.", 400,
                           fields={"ArgumentName": "key"})
        key = key.replace("${filename}", form.filename or "")
        fields["key"] = key
        check_key(key)
        size_range = (0, 5 * 1024**3)
        credential = ANONYMOUS
        if "policy" in fields:
            credential = _verify_signature(fields, self.lookup)
            size_range = _check_policy(fields, bucket)
        ctx = RequestContext(request=request, request_id="", operation="PutObject",
                             region="", credential=credential,
                             params={"Key": key, "__size_range": size_range})
        record = self.s3.store.get_bucket(bucket)
        assert record is not None
        authorize(self.s3.store, ctx, record)
        # Ownership and ACL (the form's `acl` field) are settled before any byte is stored.
        ctx.params["__acl"] = object_acl(self.s3.store, ctx, record, {"ACL": fields.get("acl")})
        return ctx

    def _store(self, bucket: str, form: _Form, blob_id: str, size: int, md5: str,
               request: HttpRequest, acl: dict[str, Any]) -> HttpResponse:
        fields = form.fields
        key = fields["key"]
        headers: dict[str, Any] = {
            "ContentType": fields.get("content-type") or form.content_type
            or "binary/octet-stream"}
        for name, param in (("cache-control", "CacheControl"),
                            ("content-disposition", "ContentDisposition"),
                            ("content-encoding", "ContentEncoding")):
            if fields.get(name):
                headers[param] = fields[name]
        meta = {k[len("x-amz-meta-"):]: v for k, v in fields.items()
                if k.startswith("x-amz-meta-")}
        if meta:
            headers["Metadata"] = meta
        headers.update(acl)
        tags = _tags_from_form(fields.get("tagging"))
        if tags:
            headers["Tags"] = tags
        lock.stamp(self.s3.store, bucket, {}, headers)  # the bucket's default retention
        record = ObjectRecord(bucket=bucket, key=key, size=size, etag=f'"{md5}"',
                              last_modified=now(), storage_class="STANDARD",
                              segments=[(blob_id, size)], headers=headers)
        self.s3.store.discard(self.s3.store.put_object(record))
        location = f"http://{request.host}/{bucket}/{quote(key)}"
        redirect = fields.get("success_action_redirect") or fields.get("redirect")
        if redirect:
            query = urlencode({"bucket": bucket, "key": key, "etag": record.etag})
            sep = "&" if "?" in redirect else "?"
            return HttpResponse(303, [("Location", f"{redirect}{sep}{query}"),
                                      ("ETag", record.etag)], b"")
        status = fields.get("success_action_status", "204")
        if status == "201":
            body = (f"{XML_DECLARATION}<PostResponse><Location>{location}</Location>"
                    f"<Bucket>{bucket}</Bucket><Key>{key}</Key>"
                    f"<ETag>{record.etag}</ETag></PostResponse>")
            return HttpResponse(201, [("Content-Type", "application/xml"),
                                      ("ETag", record.etag), ("Location", location)],
                                body.encode())
        return HttpResponse(200 if status == "200" else 204,
                            [("ETag", record.etag), ("Location", location)], b"")
