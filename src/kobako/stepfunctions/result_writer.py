"""ResultWriter: a Map Run's child results as files in kobako S3, laid out as AWS does.

Under `<Prefix>/<mapRunId>/`: `SUCCEEDED_0.json`, `FAILED_0.json`, `PENDING_0.json`
(child execution records, written only when not empty) and `manifest.json` naming
them; the Map state's result is then `{"MapRunArn", "ResultWriterDetails": {"Bucket",
"Key"}}`. A failure to write is States.ResultWriterFailed.

`WriterConfig` shapes the results as AWS documents: `Transformation` NONE keeps the
records with their metadata (the default when exporting), COMPACT keeps only the
children's outputs, FLATTEN also splices outputs that are arrays into one list (a
failed or pending child keeps its full record under both); `OutputType` JSON writes
one array per file, JSONL one value per line in `*_0.jsonl` files. A ResultWriter
with only a WriterConfig exports nothing and the transformed list is the Map
state's result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.stepfunctions.errors import StatesError
from kobako.stepfunctions.s3_objects import S3Objects

WRITER_FAILED = "States.ResultWriterFailed"


@dataclass
class ChildResult:
    """One child execution (or an item never started: status PENDING) as reported."""

    status: str
    input: str
    arn: str | None = None
    name: str | None = None
    machine_arn: str | None = None
    started: str | None = None
    stopped: str | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.arn is not None:
            out["ExecutionArn"] = self.arn
        out["Input"] = self.input
        out["InputDetails"] = {"Included": True}
        if self.name is not None:
            out["Name"] = self.name
        if self.output is not None:
            out["Output"] = self.output
            out["OutputDetails"] = {"Included": True}
        if self.error is not None:
            out["Error"] = self.error
        if self.cause is not None:
            out["Cause"] = self.cause
        if self.arn is not None:
            out["RedriveCount"] = 0
            out["RedriveStatus"] = "NOT_REDRIVABLE"
            out["RedriveStatusReason"] = f"Execution is {self.status} and cannot be " \
                "redriven"
        if self.started is not None:
            out["StartDate"] = self.started
        if self.machine_arn is not None:
            out["StateMachineArn"] = self.machine_arn
        out["Status"] = self.status
        if self.stopped is not None:
            out["StopDate"] = self.stopped
        return out


TRANSFORMATIONS = ("NONE", "COMPACT", "FLATTEN")
OUTPUT_TYPES = ("JSON", "JSONL")


@dataclass(frozen=True)
class WriterConfig:
    transformation: str = "NONE"
    output_type: str = "JSON"

    @classmethod
    def of(cls, writer: dict[str, Any], default: str) -> WriterConfig:
        """The writer's WriterConfig; `default` is the Transformation when it has none."""
        config = writer.get("WriterConfig")
        if not isinstance(config, dict):
            return cls(default)
        return cls(str(config.get("Transformation", default)),
                   str(config.get("OutputType", "JSON")))

    def shape(self, results: list[ChildResult]) -> list[Any]:
        """The records of one group of results, transformed."""
        out: list[Any] = []
        for result in results:
            if self.transformation == "NONE" or result.status != "SUCCEEDED":
                out.append(result.record())
                continue
            value = json.loads(result.output) if result.output is not None else None
            if self.transformation == "FLATTEN" and isinstance(value, list):
                out.extend(value)
            else:
                out.append(value)
        return out

    def body(self, records: list[Any]) -> bytes:
        if self.output_type == "JSONL":
            return "".join(json.dumps(r, separators=(",", ":")) + "\n"
                           for r in records).encode()
        return json.dumps(records, separators=(",", ":")).encode()


def exports(writer: dict[str, Any]) -> bool:
    """Does this ResultWriter write to S3 (Resource and Parameters/Arguments)?"""
    return "Resource" in writer


def preview(writer: dict[str, Any], results: list[ChildResult]) -> list[Any]:
    """A WriterConfig-only ResultWriter: the transformed results are the Map's result."""
    return WriterConfig.of(writer, "COMPACT").shape(results)


def _bucket_prefix(params: dict[str, Any]) -> tuple[str, str]:
    bucket = params.get("Bucket")
    if not isinstance(bucket, str) or not bucket:
        raise StatesError(WRITER_FAILED, "The ResultWriter's Parameters need a 'Bucket'.")
    prefix = str(params.get("Prefix") or "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


async def write(s3: S3Objects | None, params: dict[str, Any], map_run_arn: str,
                results: list[ChildResult], region: str, account: str,
                config: WriterConfig | None = None) -> dict[str, Any]:
    """Write the result files and the manifest; the Map state's result."""
    config = config or WriterConfig()
    if s3 is None:
        raise StatesError(WRITER_FAILED, "kobako serves no S3 here for the ResultWriter.")
    bucket, prefix = _bucket_prefix(params)
    folder = f"{prefix}{map_run_arn.rsplit(':', 1)[-1]}/"
    files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    groups: dict[str, list[ChildResult]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for result in results:
        group = "SUCCEEDED" if result.status == "SUCCEEDED" else \
            "PENDING" if result.status == "PENDING" else "FAILED"
        groups[group].append(result)
    suffix = "jsonl" if config.output_type == "JSONL" else "json"
    try:
        for group, members in groups.items():
            if not members:
                continue
            key = f"{folder}{group}_0.{suffix}"
            body = config.body(config.shape(members))
            await s3.put(bucket, key, body, region, account)
            files[group].append({"Key": key, "Size": len(body)})
        manifest = {"DestinationBucket": bucket, "MapRunArn": map_run_arn,
                    "ResultFiles": files}
        key = f"{folder}manifest.json"
        await s3.put(bucket, key, json.dumps(manifest, indent=2).encode(), region, account)
    except AwsError as exc:
        raise StatesError(WRITER_FAILED, f"{exc.message} (Service: S3, Status Code: "
                          f"{exc.status}, Error Code: {exc.code})") from None
    return {"MapRunArn": map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": key}}
