"""JSONata and workflow variables through boto3, including a kill -9 in the middle."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from conftest import Server, start_server
from sfn_helpers import machine, run, wait_done


def test_jsonata_machine_over_the_api(server: Server) -> None:
    sfn = server.client("stepfunctions")
    done = run(sfn, {"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {
        "Type": "Pass", "Assign": {"n": "{% $states.input.n %}"}, "Next": "Q"},
        "Q": {"Type": "Pass", "End": True, "Output": {"double": "{% $n * 2 %}"}}}},
        {"n": 21})
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"double": 42}


def test_variables_survive_kill_9(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        sfn: Any = server.client("stepfunctions")
        arn = machine(sfn, {"QueryLanguage": "JSONata", "StartAt": "A", "States": {
            "A": {"Type": "Pass", "Assign": {"kept": "{% $states.input.v %}"}, "Next": "W"},
            "W": {"Type": "Wait", "Seconds": 2, "Next": "B"},
            "B": {"Type": "Pass", "End": True, "Output": {"kept": "{% $kept %}"}}}})
        execution = sfn.start_execution(stateMachineArn=arn, input='{"v": "x"}')[
            "executionArn"]
        end = time.monotonic() + 5
        while time.monotonic() < end:
            events = sfn.get_execution_history(executionArn=execution)["events"]
            if events[-1]["type"] == "WaitStateEntered":
                break
            time.sleep(0.02)
        server.kill()
    finally:
        server.stop()
    server = start_server(tmp_path / "data")
    try:
        done = wait_done(server.client("stepfunctions"), execution, 10)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == {"kept": "x"}
    finally:
        server.stop()
