"""Distributed Map ResultWriter's WriterConfig: transformations and output types, read back
from the files written to kobako S3."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sfn_helpers import dmap, machine, run

PUT = "arn:aws:states:::s3:putObject"
# n == 2 fails; the others return [n, n * 10] (an array, for FLATTEN to splice).
PAIRS = {"C": {"Type": "Choice", "Choices": [
    {"Variable": "$.n", "NumericEquals": 2, "Next": "Bad"}], "Default": "Pair"},
    "Bad": {"Type": "Fail", "Error": "Two", "Cause": "no twos"},
    "Pair": {"Type": "Pass", "Parameters": {
        "pair.$": "States.Array($.n, States.MathAdd($.n, 10))"}, "OutputPath": "$.pair",
        "End": True}}
ITEMS = {"items": [{"n": i} for i in range(4)]}


def _files(s3: Any, bucket: str, output: str) -> dict[str, bytes]:
    """The manifest's result files: group -> body, and the manifest itself."""
    details = json.loads(output)["ResultWriterDetails"]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=details["Key"])["Body"].read())
    found = {"manifest": json.dumps(manifest).encode()}
    for group, entries in manifest["ResultFiles"].items():
        for entry in entries:
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            assert entry["Size"] == len(body)
            found[group] = body
            found[group + ":key"] = entry["Key"].encode()
    return found


def _lines(body: bytes) -> list[Any]:
    text = body.decode()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("kind", ["STANDARD", "EXPRESS"])
def test_flatten_jsonl_files(sfn: Any, s3: Any, bucket: str, kind: str) -> None:
    definition = dmap(PAIRS, "C", kind, ItemsPath="$.items", ToleratedFailureCount=1,
                      ResultWriter={"Resource": PUT,
                                    "Parameters": {"Bucket": bucket, "Prefix": "flat"},
                                    "WriterConfig": {"Transformation": "FLATTEN",
                                                     "OutputType": "JSONL"}})
    done = run(sfn, definition, ITEMS, 30)
    assert done["status"] == "SUCCEEDED", done
    files = _files(s3, bucket, done["output"])
    assert files["SUCCEEDED:key"].decode().endswith("/SUCCEEDED_0.jsonl")
    assert _lines(files["SUCCEEDED"]) == [0, 10, 1, 11, 3, 13]
    [failed] = _lines(files["FAILED"])  # a failed child keeps its whole record
    assert (failed["Status"], failed["Error"], failed["Cause"]) == ("FAILED", "Two",
                                                                    "no twos")
    assert json.loads(failed["Input"]) == {"n": 2}
    assert files["FAILED:key"].decode().endswith("/FAILED_0.jsonl")


def test_compact_json_and_none_jsonl(sfn: Any, s3: Any, bucket: str) -> None:
    compact = dmap(PAIRS, "C", "EXPRESS", ItemsPath="$.items", ToleratedFailureCount=1,
                   ResultWriter={"Resource": PUT, "Parameters": {"Bucket": bucket},
                                 "WriterConfig": {"Transformation": "COMPACT",
                                                  "OutputType": "JSON"}})
    done = run(sfn, compact, ITEMS, 30)
    assert done["status"] == "SUCCEEDED", done
    files = _files(s3, bucket, done["output"])
    assert files["SUCCEEDED:key"].decode().endswith("/SUCCEEDED_0.json")
    assert json.loads(files["SUCCEEDED"]) == [[0, 10], [1, 11], [3, 13]]

    none = dmap(PAIRS, "C", "EXPRESS", ItemsPath="$.items", ToleratedFailureCount=1,
                ResultWriter={"Resource": PUT, "Parameters": {"Bucket": bucket},
                              "WriterConfig": {"Transformation": "NONE",
                                               "OutputType": "JSONL"}})
    done = run(sfn, none, ITEMS, 30)
    assert done["status"] == "SUCCEEDED", done
    records = _lines(_files(s3, bucket, done["output"])["SUCCEEDED"])
    assert [json.loads(r["Output"]) for r in records] == [[0, 10], [1, 11], [3, 13]]
    assert all(r["Status"] == "SUCCEEDED" and "ExecutionArn" in r for r in records)


def test_writer_config_alone_is_the_state_result(sfn: Any) -> None:
    for transformation, expected in (("FLATTEN", [0, 10, 1, 11, 3, 13]),
                                     ("COMPACT", [[0, 10], [1, 11], [3, 13]])):
        items = {"items": [{"n": i} for i in (0, 1, 3)]}
        definition = dmap(PAIRS, "C", "EXPRESS", ItemsPath="$.items", ResultWriter={
            "WriterConfig": {"Transformation": transformation, "OutputType": "JSON"}})
        done = run(sfn, definition, items, 30)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == expected


def test_writer_config_is_validated(sfn: Any, bucket: str) -> None:
    bad = [{"WriterConfig": {"Transformation": "SQUASH", "OutputType": "JSON"}},
           {"WriterConfig": {"Transformation": "NONE", "OutputType": "CSV"}},
           {"WriterConfig": {"Transformation": "NONE"}},
           {"WriterConfig": {"Transformation": "NONE", "OutputType": "JSON", "X": 1}},
           {},
           {"Resource": "arn:aws:states:::s3:getObject",
            "Parameters": {"Bucket": bucket}}]
    for writer in bad:
        with pytest.raises(ClientError) as exc:
            machine(sfn, dmap(PAIRS, "C", ItemsPath="$.items", ResultWriter=writer))
        assert exc.value.response["Error"]["Code"] == "InvalidDefinition", writer
