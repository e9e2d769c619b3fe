"""Distributed Map through boto3: items from kobako S3, batches, result files, Map Runs."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sfn_helpers import dmap, machine, run, wait_done

GET = "arn:aws:states:::s3:getObject"
LIST = "arn:aws:states:::s3:listObjectsV2"


PASS = {"P": {"Type": "Pass", "End": True}}


def events(sfn: Any, arn: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sfn.get_execution_history(executionArn=arn,
                                                            maxResults=1000)["events"]
    return found


def test_csv_reader_result_writer_and_map_run(sfn: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="in/rows.csv", Body=b"name,qty\nabc,1\ndef,2\nxyz,3\n")
    definition = dmap(
        {"Double": {"Type": "Pass", "Parameters": {"name.$": "$.row.name",
                                                   "at.$": "$.index"}, "End": True}},
        "Double", Label="rows", MaxConcurrency=2,
        ItemReader={"Resource": GET, "ReaderConfig": {"InputType": "CSV",
                                                      "CSVHeaderLocation": "FIRST_ROW"},
                    "Parameters": {"Bucket.$": "$.bucket", "Key": "in/rows.csv"}},
        ItemSelector={"row.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
        ResultWriter={"Resource": "arn:aws:states:::s3:putObject",
                      "Parameters": {"Bucket": bucket, "Prefix": "out"}})
    done = run(sfn, definition, {"bucket": bucket}, 30)
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    map_run = out["MapRunArn"]
    run_id = map_run.rsplit(":", 1)[1]
    assert map_run.split(":")[5] == "mapRun" and "/rows:" in map_run
    assert out["ResultWriterDetails"] == {"Bucket": bucket, "Key": f"out/{run_id}/manifest.json"}
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"out/{run_id}/manifest.json")
                          ["Body"].read())
    assert manifest["DestinationBucket"] == bucket and manifest["MapRunArn"] == map_run
    assert manifest["ResultFiles"]["FAILED"] == [] and manifest["ResultFiles"]["PENDING"] == []
    [succeeded] = manifest["ResultFiles"]["SUCCEEDED"]
    assert succeeded["Key"] == f"out/{run_id}/SUCCEEDED_0.json"
    body = s3.get_object(Bucket=bucket, Key=succeeded["Key"])["Body"].read()
    assert succeeded["Size"] == len(body)
    records = json.loads(body)
    assert sorted(json.loads(r["Output"])["name"] for r in records) == ["abc", "def", "xyz"]
    assert {json.loads(r["Input"])["row"]["qty"] for r in records} == {"1", "2", "3"}
    assert all(r["Status"] == "SUCCEEDED" and r["ExecutionArn"].startswith(
        "arn:aws:states:") for r in records)

    types = [e["type"] for e in events(sfn, done["executionArn"])]
    assert types == ["ExecutionStarted", "MapStateEntered", "MapStateStarted",
                     "MapRunStarted", "MapRunSucceeded", "MapStateSucceeded",
                     "MapStateExited", "ExecutionSucceeded"]
    started = events(sfn, done["executionArn"])[3]
    assert started["mapRunStartedEventDetails"] == {"mapRunArn": map_run}

    runs = sfn.list_map_runs(executionArn=done["executionArn"])["mapRuns"]
    assert [r["mapRunArn"] for r in runs] == [map_run]
    assert runs[0]["stateMachineArn"].endswith("/rows") and "stopDate" in runs[0]
    described = sfn.describe_map_run(mapRunArn=map_run)
    assert described["status"] == "SUCCEEDED" and described["maxConcurrency"] == 2
    assert described["itemCounts"]["succeeded"] == 3 and described["itemCounts"]["total"] == 3
    assert described["itemCounts"]["resultsWritten"] == 3
    assert described["executionCounts"]["succeeded"] == 3

    children = sfn.list_executions(mapRunArn=map_run)["executions"]
    assert len(children) == 3 and all(c["mapRunArn"] == map_run for c in children)
    child = sfn.describe_execution(executionArn=children[0]["executionArn"])
    assert child["status"] == "SUCCEEDED" and child["mapRunArn"] == map_run
    child_types = [e["type"] for e in events(sfn, child["executionArn"])]
    assert child_types == ["ExecutionStarted", "PassStateEntered", "PassStateExited",
                           "ExecutionSucceeded"]


def test_json_jsonl_given_headers_and_batches(sfn: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a.json", Body=json.dumps(
        [{"n": i} for i in range(5)]).encode())
    s3.put_object(Bucket=bucket, Key="b.jsonl", Body=b'{"n": 1}\n\n{"n": 2}\n')
    s3.put_object(Bucket=bucket, Key="c.csv", Body=b"1|x\n2|y\n3|z\n")
    batched = dmap(PASS, "P", "EXPRESS",
                   ItemReader={"Resource": GET, "ReaderConfig": {"InputType": "JSON"},
                               "Parameters": {"Bucket": bucket, "Key": "a.json"}},
                   ItemBatcher={"MaxItemsPerBatch": 2, "BatchInput": {"tag.$": "$.tag"}})
    done = run(sfn, batched, {"tag": "t"}, 30)
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["output"]) == [
        {"BatchInput": {"tag": "t"}, "Items": [{"n": 0}, {"n": 1}]},
        {"BatchInput": {"tag": "t"}, "Items": [{"n": 2}, {"n": 3}]},
        {"BatchInput": {"tag": "t"}, "Items": [{"n": 4}]}]
    map_run = sfn.list_map_runs(executionArn=done["executionArn"])["mapRuns"][0]["mapRunArn"]
    described = sfn.describe_map_run(mapRunArn=map_run)
    assert described["itemCounts"]["succeeded"] == 5
    assert described["executionCounts"]["succeeded"] == 3
    assert sfn.list_executions(mapRunArn=map_run)["executions"] == []  # EXPRESS: no record

    by_bytes = dmap(PASS, "P", "EXPRESS",
                    ItemReader={"Resource": GET, "ReaderConfig": {"InputType": "JSON"},
                                "Parameters": {"Bucket": bucket, "Key": "a.json"}},
                    ItemBatcher={"MaxInputBytesPerBatch": 30})
    done = run(sfn, by_bytes, None, 30)
    sizes = [len(b["Items"]) for b in json.loads(done["output"])]
    assert sum(sizes) == 5 and max(sizes) < 5

    jsonl = dmap(PASS, "P", "EXPRESS",
                 ItemReader={"Resource": GET, "ReaderConfig": {"InputType": "JSONL"},
                             "Parameters": {"Bucket": bucket, "Key": "b.jsonl"}})
    assert json.loads(run(sfn, jsonl, None, 30)["output"]) == [{"n": 1}, {"n": 2}]

    given = dmap(PASS, "P", "EXPRESS",
                 ItemReader={"Resource": GET, "ReaderConfig": {
                     "InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVDelimiter": "PIPE",
                     "CSVHeaders": ["id", "v"], "MaxItems": 2},
                     "Parameters": {"Bucket": bucket, "Key": "c.csv"}})
    assert json.loads(run(sfn, given, None, 30)["output"]) == [
        {"id": "1", "v": "x"}, {"id": "2", "v": "y"}]


def test_list_objects_and_inventory_manifest(sfn: Any, s3: Any, bucket: str) -> None:
    for key in ("data/a.txt", "data/b.txt", "other/c.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"12345")
    listing = dmap(PASS, "P", "EXPRESS",
                   ItemReader={"Resource": LIST, "Parameters": {"Bucket": bucket,
                                                                "Prefix": "data/"}})
    items = json.loads(run(sfn, listing, None, 30)["output"])
    assert [i["Key"] for i in items] == ["data/a.txt", "data/b.txt"]
    assert items[0]["Size"] == 5 and items[0]["StorageClass"] == "STANDARD"
    assert isinstance(items[0]["LastModified"], int) and items[0]["Etag"].startswith('"')

    rows = b'"src","data/a.txt","5","2024-01-01T00:00:00.000Z"\n' \
           b'"src","data/b.txt","5","2024-01-01T00:00:00.000Z"\n'
    s3.put_object(Bucket=bucket, Key="inv/data/part-0.csv.gz", Body=gzip.compress(rows))
    s3.put_object(Bucket=bucket, Key="inv/manifest.json", Body=json.dumps({
        "sourceBucket": "src", "destinationBucket": f"arn:aws:s3:::{bucket}",
        "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size, LastModifiedDate",
        "files": [{"key": "inv/data/part-0.csv.gz", "size": 1, "MD5checksum": "x"}]}).encode())
    inventory = dmap(PASS, "P", "EXPRESS",
                     ItemReader={"Resource": GET, "ReaderConfig": {"InputType": "MANIFEST"},
                                 "Parameters": {"Bucket": bucket, "Key": "inv/manifest.json"}})
    items = json.loads(run(sfn, inventory, None, 30)["output"])
    assert items == [{"Bucket": "src", "Key": "data/a.txt", "Size": "5",
                      "LastModifiedDate": "2024-01-01T00:00:00.000Z"},
                     {"Bucket": "src", "Key": "data/b.txt", "Size": "5",
                      "LastModifiedDate": "2024-01-01T00:00:00.000Z"}]

    missing = dmap(PASS, "P", "EXPRESS",
                   ItemReader={"Resource": GET, "ReaderConfig": {"InputType": "JSON"},
                               "Parameters": {"Bucket": bucket, "Key": "nope.json"}})
    done = run(sfn, missing, None, 30)
    assert (done["status"], done["error"]) == ("FAILED", "States.ItemReaderFailed")


FAIL_ODD = {"C": {"Type": "Choice", "Choices": [
    {"Variable": "$.n", "NumericGreaterThan": 2, "Next": "Bad"}], "Default": "Ok"},
    "Bad": {"Type": "Fail", "Error": "Odd", "Cause": "too big"},
    "Ok": {"Type": "Pass", "End": True}}


def test_tolerated_failures_and_failed_results(sfn: Any, s3: Any, bucket: str) -> None:
    items = {"items": [{"n": i} for i in range(6)]}  # n = 3, 4, 5 fail
    writer = {"Resource": "arn:aws:states:::s3:putObject",
              "Parameters": {"Bucket": bucket, "Prefix": "res/"}}
    over = dmap(FAIL_ODD, "C", ItemsPath="$.items", ToleratedFailureCount=1,
                MaxConcurrency=1, ResultWriter=writer)
    done = run(sfn, over, items, 30)
    assert (done["status"], done["error"]) == ("FAILED",
                                               "States.ExceedToleratedFailureThreshold")
    history = events(sfn, done["executionArn"])
    failed = next(e for e in history if e["type"] == "MapRunFailed")
    assert failed["mapRunFailedEventDetails"]["error"] == \
        "States.ExceedToleratedFailureThreshold"
    map_run = sfn.list_map_runs(executionArn=done["executionArn"])["mapRuns"][0]["mapRunArn"]
    described = sfn.describe_map_run(mapRunArn=map_run)
    assert described["status"] == "FAILED" and described["toleratedFailureCount"] == 1
    assert described["itemCounts"]["failed"] == 2 and described["itemCounts"]["pending"] == 1
    manifest = json.loads(s3.get_object(
        Bucket=bucket, Key=f"res/{map_run.rsplit(':', 1)[1]}/manifest.json")["Body"].read())
    [failed_file] = manifest["ResultFiles"]["FAILED"]
    records = json.loads(s3.get_object(Bucket=bucket, Key=failed_file["Key"])["Body"].read())
    assert {(r["Status"], r["Error"], r["Cause"]) for r in records} == {
        ("FAILED", "Odd", "too big")}
    assert len(manifest["ResultFiles"]["PENDING"]) == 1

    within = dmap(FAIL_ODD, "C", "EXPRESS", ItemsPath="$.items",
                  ToleratedFailurePercentage=50)
    done = run(sfn, within, items, 30)
    assert done["status"] == "SUCCEEDED", done
    outputs = json.loads(done["output"])
    assert outputs[:3] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert outputs[3] == {"Error": "Odd", "Cause": "too big"}


def test_max_concurrency_update_map_run_and_stop(sfn: Any) -> None:
    slow = {"W": {"Type": "Wait", "Seconds": 1, "End": True}}
    arn = machine(sfn, dmap(slow, "W", MaxConcurrency=1, ItemsPath="$.items"))
    execution = sfn.start_execution(stateMachineArn=arn,
                                    input=json.dumps({"items": list(range(5))}))["executionArn"]
    end = time.monotonic() + 10
    while not (runs := sfn.list_map_runs(executionArn=execution)["mapRuns"]):
        assert time.monotonic() < end
        time.sleep(0.05)
    map_run = runs[0]["mapRunArn"]
    time.sleep(0.3)
    counts = sfn.describe_map_run(mapRunArn=map_run)["executionCounts"]
    assert counts["running"] == 1 and counts["pending"] == 4
    sfn.update_map_run(mapRunArn=map_run, maxConcurrency=5, toleratedFailureCount=2)
    done = wait_done(sfn, execution, 10)
    assert done["status"] == "SUCCEEDED"
    assert (done["stopDate"] - done["startDate"]).total_seconds() < 3.5
    described = sfn.describe_map_run(mapRunArn=map_run)
    assert described["maxConcurrency"] == 5 and described["toleratedFailureCount"] == 2

    stopped = sfn.start_execution(stateMachineArn=arn, input=json.dumps(
        {"items": list(range(3))}))["executionArn"]
    end = time.monotonic() + 10
    while not (runs := sfn.list_map_runs(executionArn=stopped)["mapRuns"]):
        assert time.monotonic() < end
        time.sleep(0.05)
    time.sleep(0.2)
    sfn.stop_execution(executionArn=stopped)
    end = time.monotonic() + 5
    while sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["status"] == "RUNNING":
        assert time.monotonic() < end
        time.sleep(0.05)
    assert sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["status"] == "ABORTED"
    children = sfn.list_executions(mapRunArn=runs[0]["mapRunArn"])["executions"]
    assert [c["status"] for c in children] == ["ABORTED"]


def test_map_run_api_errors(sfn: Any) -> None:
    gone = "arn:aws:states:us-east-1:000000000000:mapRun:sm/label:" + "0" * 36
    calls = [(lambda: sfn.describe_map_run(mapRunArn=gone), "ResourceNotFound"),
             (lambda: sfn.update_map_run(mapRunArn=gone, maxConcurrency=1),
              "ResourceNotFound"),
             (lambda: sfn.describe_map_run(mapRunArn="arn:aws:states:us-east-1:0:x"),
              "InvalidArn"),
             (lambda: sfn.list_map_runs(
                 executionArn="arn:aws:states:us-east-1:000000000000:execution:a:b"),
              "ExecutionDoesNotExist")]
    for call, expected in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert exc.value.response["Error"]["Code"] == expected
    inline_reader = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True, "ItemReader": {"Resource": GET, "Parameters": {}},
        "ItemProcessor": {"StartAt": "P", "States": PASS}}}}
    with pytest.raises(ClientError) as exc:
        machine(sfn, inline_reader)
    assert exc.value.response["Error"]["Code"] == "InvalidDefinition"
