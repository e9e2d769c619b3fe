"""A distributed Map's items: ItemReader over kobako S3, then ItemBatcher.

`arn:aws:states:::s3:getObject` reads one object as JSON (an array), JSONL, CSV
(header from the first row or `CSVHeaders`) or an S3 inventory `MANIFEST`;
`arn:aws:states:::s3:listObjectsV2` makes one item per object, shaped as AWS shapes
them (`Etag`, `Key`, `LastModified` in epoch seconds, `Size`, `StorageClass`). Any
failure to read is States.ItemReaderFailed, as in AWS.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import datetime
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.stepfunctions.errors import StatesError
from kobako.stepfunctions.integrations import normalize
from kobako.stepfunctions.s3_objects import S3Objects

READER_FAILED = "States.ItemReaderFailed"
GET_OBJECT = "arn:aws:states:::s3:getObject"
LIST_OBJECTS = "arn:aws:states:::s3:listObjectsV2"
DELIMITERS = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "SPACE": " ", "TAB": "\t"}
BATCH_BYTES_LIMIT = 256 * 1024


def _fail(cause: str) -> StatesError:
    return StatesError(READER_FAILED, cause)


async def read_items(s3: S3Objects | None, reader: dict[str, Any], params: dict[str, Any],
                     config: dict[str, Any], region: str, account: str) -> list[Any]:
    """The items ItemReader names (`params` and `config` already resolved)."""
    if s3 is None:
        raise _fail("kobako serves no S3 here for the ItemReader.")
    resource = normalize(str(reader.get("Resource", "")))
    bucket = params.get("Bucket")
    if not isinstance(bucket, str):
        raise _fail("The ItemReader's Parameters need a 'Bucket'.")
    try:
        if resource == LIST_OBJECTS:
            listed = await s3.list(params, region, account)
            items: list[Any] = [_listed(obj) for obj in listed]
        elif resource == GET_OBJECT:
            key = params.get("Key")
            if not isinstance(key, str):
                raise _fail("The ItemReader's Parameters need a 'Key'.")
            data = await s3.get(bucket, key, region, account)
            items = await _parse_object(s3, data, config, region, account)
        else:
            raise _fail(f"kobako's ItemReader does not support the resource "
                        f"'{reader.get('Resource')}'.")
    except AwsError as exc:
        raise _fail(f"{exc.message} (Service: S3, Status Code: {exc.status}, "
                    f"Error Code: {exc.code})") from None
    limit = config.get("MaxItems")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        items = items[:limit]
    return items


def _listed(obj: dict[str, Any]) -> dict[str, Any]:
    modified = obj.get("LastModified")
    seconds = int(modified.timestamp()) if isinstance(modified, datetime) else modified
    return {"Etag": obj.get("ETag"), "Key": obj.get("Key"), "LastModified": seconds,
            "Size": obj.get("Size"), "StorageClass": obj.get("StorageClass", "STANDARD")}


async def _parse_object(s3: S3Objects, data: bytes, config: dict[str, Any], region: str,
                        account: str) -> list[Any]:
    kind = str(config.get("InputType", "JSON"))
    if kind == "MANIFEST" or config.get("ManifestType") == "S3_INVENTORY":
        return await _inventory(s3, data, region, account)
    if config.get("ManifestType") == "ATHENA_DATA":
        return await _athena(s3, data, config, region, account)
    return parse(data, kind, config)


def parse(data: bytes, kind: str, config: dict[str, Any]) -> list[Any]:
    """One object's items as InputType reads it."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _fail("The object is not UTF-8 text.") from None
    if kind == "JSON":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _fail(f"The object is not valid JSON: {exc}") from None
        pointer = config.get("ItemsPointer")
        if isinstance(pointer, str) and pointer:
            value = _pointer(value, pointer)
        if not isinstance(value, list):
            raise _fail("Attempting to map over non-iterable node.")
        return value
    if kind == "JSONL":
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise _fail(f"Line {number} is not valid JSON: {exc}") from None
        return items
    if kind == "CSV":
        return _csv(text, config)
    raise _fail(f"kobako's ItemReader does not support the InputType '{kind}'.")


def _pointer(value: Any, pointer: str) -> Any:
    for part in pointer.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise _fail(f"The ItemsPointer '{pointer}' names nothing in the object.")
    return value


def _csv(text: str, config: dict[str, Any]) -> list[dict[str, str]]:
    delimiter = DELIMITERS.get(str(config.get("CSVDelimiter", "COMMA")), ",")
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]
    location = config.get("CSVHeaderLocation", "FIRST_ROW")
    if location == "GIVEN":
        headers = config.get("CSVHeaders")
        if not isinstance(headers, list) or not headers:
            raise _fail("CSVHeaderLocation GIVEN needs CSVHeaders.")
        headers = [str(h) for h in headers]
    else:
        if not rows:
            return []
        headers, rows = rows[0], rows[1:]
    if len(set(headers)) != len(headers) or any(not h for h in headers):
        raise _fail("CSV headers must be unique and not empty.")
    items = []
    for number, row in enumerate(rows, 1):
        if len(row) > len(headers):
            raise _fail(f"Row {number} has more fields than there are CSV headers.")
        items.append({h: (row[i] if i < len(row) else "") for i, h in enumerate(headers)})
    return items


async def _inventory(s3: S3Objects, data: bytes, region: str, account: str) -> list[Any]:
    """An S3 Inventory manifest.json: the rows of every CSV file it lists."""
    try:
        manifest = json.loads(data)
        columns = [c.strip() for c in str(manifest["fileSchema"]).split(",")]
        bucket = str(manifest.get("destinationBucket", "")).rsplit(":", 1)[-1]
        files = list(manifest["files"])
    except (ValueError, KeyError, TypeError):
        raise _fail("The object is not an S3 Inventory manifest.") from None
    if str(manifest.get("fileFormat", "CSV")).upper() != "CSV":
        raise _fail("kobako reads only CSV S3 Inventory reports.")
    items: list[Any] = []
    for entry in files:
        raw = await s3.get(bucket, str(entry["key"]), region, account)
        if str(entry["key"]).endswith(".gz"):
            raw = gzip.decompress(raw)
        items += _csv(raw.decode("utf-8"), {"CSVHeaderLocation": "GIVEN",
                                            "CSVHeaders": columns})
    return items


async def _athena(s3: S3Objects, data: bytes, config: dict[str, Any], region: str,
                  account: str) -> list[Any]:
    """An Athena UNLOAD manifest: one `s3://` URI a line, each read with InputType."""
    items: list[Any] = []
    kind = str(config.get("InputType", "CSV"))
    for line in data.decode("utf-8").splitlines():
        uri = line.strip()
        if not uri:
            continue
        if not uri.startswith("s3://") or "/" not in uri[5:]:
            raise _fail(f"The manifest line '{uri}' is not an s3:// URI.")
        bucket, key = uri[5:].split("/", 1)
        items += parse(await s3.get(bucket, key, region, account), kind, config)
    return items


def batches(items: list[Any], batcher: dict[str, Any], batch_input: Any) -> list[Any]:
    """ItemBatcher: `{"BatchInput": ..., "Items": [...]}` per child execution."""
    per_batch = batcher.get("MaxItemsPerBatch")
    max_bytes = batcher.get("MaxInputBytesPerBatch", BATCH_BYTES_LIMIT)
    max_bytes = min(int(max_bytes), BATCH_BYTES_LIMIT)
    base = {"BatchInput": batch_input} if batch_input is not None else {}
    overhead = len(json.dumps({**base, "Items": []}, separators=(",", ":")).encode())
    out: list[Any] = []
    current: list[Any] = []
    size = overhead
    for item in items:
        item_size = len(json.dumps(item, separators=(",", ":")).encode()) + 1
        full = per_batch is not None and len(current) >= int(per_batch)
        if current and (full or size + item_size > max_bytes):
            out.append({**base, "Items": current})
            current, size = [], overhead
        if overhead + item_size > max_bytes:
            raise StatesError("States.ItemReaderFailed", "An item is larger than "
                              "MaxInputBytesPerBatch.")
        current.append(item)
        size += item_size
    if current:
        out.append({**base, "Items": current})
    return out
