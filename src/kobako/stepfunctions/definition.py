"""Parse and validate an Amazon States Language definition.

Problems are collected with their JSON location (`/States/A/Next`) and reported the
way AWS words InvalidDefinition: `Invalid State Machine Definition: 'CODE: message at
/path'`, so a bad definition never reaches the interpreter.
"""

from __future__ import annotations

import json
from typing import Any

from kobako.stepfunctions import choice, intrinsics, jsonata_ql, paths
from kobako.stepfunctions.errors import ALL
from kobako.stepfunctions.result_writer import OUTPUT_TYPES, TRANSFORMATIONS

COMMON = {"Type", "Comment", "QueryLanguage"}
IO = {"InputPath", "OutputPath"}
FLOW = {"Next", "End"}
FIELDS: dict[str, set[str]] = {
    "Pass": COMMON | IO | FLOW | {"Result", "ResultPath", "Parameters"},
    "Task": COMMON | IO | FLOW | {
        "Resource", "Parameters", "ResultPath", "ResultSelector", "Retry", "Catch",
        "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath",
        "Credentials",
    },
    "Choice": COMMON | IO | {"Choices", "Default"},
    "Wait": COMMON | IO | FLOW | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath"},
    "Succeed": COMMON | IO,
    "Fail": COMMON | {"Error", "Cause", "ErrorPath", "CausePath"},
    "Parallel": COMMON | IO | FLOW | {
        "Branches", "Parameters", "ResultPath", "ResultSelector", "Retry", "Catch",
    },
    "Map": COMMON | IO | FLOW | {
        "Iterator", "ItemProcessor", "ItemsPath", "ItemSelector", "Parameters",
        "MaxConcurrency", "MaxConcurrencyPath", "ResultPath", "ResultSelector", "Retry",
        "Catch", "ToleratedFailureCount", "ToleratedFailurePercentage",
        "ToleratedFailureCountPath", "ToleratedFailurePercentagePath", "Label",
        "ItemReader", "ItemBatcher", "ResultWriter",
    },
}
for _kind, _fields in FIELDS.items():
    _fields |= {"Output"} if _kind != "Fail" else set()
    _fields |= {"Assign"} if _kind not in ("Succeed", "Fail") else set()
    _fields |= {"Arguments"} if _kind in ("Task", "Parallel") else set()
    _fields |= {"Items"} if _kind == "Map" else set()
# Fields of one query language that the other one does not accept.
JSONPATH_ONLY = {"InputPath", "OutputPath", "Parameters", "ResultPath", "ResultSelector",
                 "ItemsPath", "SecondsPath", "TimestampPath", "ErrorPath", "CausePath",
                 "TimeoutSecondsPath", "HeartbeatSecondsPath", "MaxConcurrencyPath",
                 "ToleratedFailureCountPath", "ToleratedFailurePercentagePath", "Iterator",
                 "Result"}
JSONATA_ONLY = {"Arguments", "Output", "Items"}
LANGUAGES = ("JSONPath", "JSONata")
PATH_FIELDS = ("InputPath", "OutputPath", "ItemsPath", "SecondsPath", "TimestampPath",
               "ErrorPath", "CausePath", "TimeoutSecondsPath", "HeartbeatSecondsPath")


class InvalidDefinition(ValueError):
    """The definition is not valid ASL; `str()` is AWS's message."""


def diagnose(text: str) -> tuple[Any, list[str]]:
    """The parsed document and every problem found, each `CODE: message at /location`."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [f"INVALID_JSON_DESCRIPTION: {exc}"]
    problems: list[str] = []
    if not isinstance(document, dict):
        problems.append("SCHEMA_VALIDATION_FAILED: The definition must be a JSON object at /")
    else:
        _machine(document, "", problems)
    return document, problems


class _AnyName(set[str]):
    """Every name: a lone state's Next targets are outside the state (TestState)."""

    def __contains__(self, item: object) -> bool:
        return True


def check_state(state: Any, language: str = "JSONPath") -> list[str]:
    """Problems of one state on its own (TestState's `definition`)."""
    if not isinstance(state, dict):
        return ["SCHEMA_VALIDATION_FAILED: The state must be a JSON object at /"]
    problems: list[str] = []
    _state(state, "", _AnyName(), problems, language)
    return problems


def parse(text: str) -> dict[str, Any]:
    """The definition as a dict, or InvalidDefinition naming every problem found."""
    document, problems = diagnose(text)
    if problems:
        raise InvalidDefinition(f"Invalid State Machine Definition: '{', '.join(problems)}'")
    machine: dict[str, Any] = document
    return machine


def _machine(machine: dict[str, Any], where: str, problems: list[str],
             language: str = "JSONPath") -> None:
    states = machine.get("States")
    start = machine.get("StartAt")
    if "QueryLanguage" in machine:
        if machine["QueryLanguage"] not in LANGUAGES:
            problems.append(f"SCHEMA_VALIDATION_FAILED: 'QueryLanguage' must be JSONPath or "
                            f"JSONata at {where}/QueryLanguage")
        else:
            language = str(machine["QueryLanguage"])
    for key in machine:
        if key not in {"States", "StartAt", "Comment", "TimeoutSeconds", "Version",
                       "QueryLanguage", "ProcessorConfig"}:
            problems.append(f"SCHEMA_VALIDATION_FAILED: Field '{key}' is not supported at "
                            f"{where or '/'}")
    if not isinstance(states, dict) or not states:
        problems.append(f"SCHEMA_VALIDATION_FAILED: The field 'States' is required and must "
                        f"be a non-empty object at {where}/States")
        return
    if not isinstance(start, str):
        problems.append(f"SCHEMA_VALIDATION_FAILED: The field 'StartAt' is required at "
                        f"{where}/StartAt")
    elif start not in states:
        problems.append(f"MISSING_TRANSITION_TARGET: Missing 'Next' target: {start} at "
                        f"{where}/StartAt")
    if "TimeoutSeconds" in machine:
        _positive_int(machine["TimeoutSeconds"], f"{where}/TimeoutSeconds", problems)
    for name, state in states.items():
        at = f"{where}/States/{name}"
        if len(name) > 80:
            problems.append(f"SCHEMA_VALIDATION_FAILED: State name is too long at {at}")
        if not isinstance(state, dict):
            problems.append(f"SCHEMA_VALIDATION_FAILED: A state must be an object at {at}")
            continue
        _state(state, at, set(states), problems, language)


def _target(value: Any, names: set[str], at: str, problems: list[str]) -> None:
    if not isinstance(value, str) or value not in names:
        problems.append(f"MISSING_TRANSITION_TARGET: Missing 'Next' target: {value} at {at}")


def _positive_int(value: Any, at: str, problems: list[str], minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.append(f"SCHEMA_VALIDATION_FAILED: The value must be an integer >= "
                        f"{minimum} at {at}")


def _state(state: dict[str, Any], at: str, names: set[str], problems: list[str],
           machine_language: str = "JSONPath") -> None:
    kind = state.get("Type")
    if kind not in FIELDS:
        problems.append(f"SCHEMA_VALIDATION_FAILED: The field 'Type' must be one of "
                        f"{', '.join(FIELDS)} at {at}/Type")
        return
    language = state.get("QueryLanguage", machine_language)
    if language not in LANGUAGES or (machine_language == "JSONata" and language != "JSONata"):
        problems.append(f"SCHEMA_VALIDATION_FAILED: The QueryLanguage of a state must be "
                        f"JSONPath or JSONata, and JSONata when the state machine's is at "
                        f"{at}/QueryLanguage")
        return
    foreign = JSONPATH_ONLY if language == "JSONata" else JSONATA_ONLY
    for key in state:
        if key not in FIELDS[kind] or key in foreign:
            problems.append(f"SCHEMA_VALIDATION_FAILED: Field '{key}' is not supported at "
                            f"{at}/{key}")
    _assign(state.get("Assign"), f"{at}/Assign", language, problems)
    if language == "JSONata":
        nested = ("Branches", "ItemProcessor", "Iterator")
        for problem in jsonata_ql.check({k: v for k, v in state.items() if k not in nested}):
            problems.append(f"SCHEMA_VALIDATION_FAILED: The JSONata expression {problem} is "
                            f"not valid at {at}")
    if "Next" in FIELDS[kind]:
        has_next, ends = "Next" in state, state.get("End") is True
        if has_next == ends:
            problems.append(f"SCHEMA_VALIDATION_FAILED: Exactly one of 'Next' or 'End' "
                            f"is required at {at}")
        elif has_next:
            _target(state["Next"], names, f"{at}/Next", problems)
    for field in PATH_FIELDS:
        value = state.get(field)
        if field in ("ErrorPath", "CausePath") and isinstance(value, str) \
                and intrinsics.looks_like_call(value):
            _template({field + ".$": value}, at, problems)
        elif value is not None:
            _path(value, f"{at}/{field}", problems)
    if state.get("ResultPath") is not None:
        try:
            paths.validate_reference_path(str(state["ResultPath"]))
        except paths.PathError:
            problems.append(f"SCHEMA_VALIDATION_FAILED: The value for the field 'ResultPath' "
                            f"must be a valid Reference Path at {at}/ResultPath")
    for field in ("Parameters", "ResultSelector", "ItemSelector"):
        if field in state:
            _template(state[field], f"{at}/{field}", problems)
    for field in ("Retry", "Catch"):
        if field in state:
            _handlers(state[field], field, at, names, problems)
    check = _CHECKS.get(kind)
    if check is not None:
        check(state, at, names, problems, language)


def _path(value: Any, at: str, problems: list[str]) -> None:
    try:
        if not isinstance(value, str):
            raise paths.PathError("not a string")
        paths.validate_path(value[1:] if value.startswith("$$") else value)
    except paths.PathError:
        problems.append(f"SCHEMA_VALIDATION_FAILED: The value for the field must be a "
                        f"valid JSONPath at {at}")


def _template(value: Any, at: str, problems: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith(".$"):
                if not isinstance(item, str):
                    problems.append(f"SCHEMA_VALIDATION_FAILED: The value for the field "
                                    f"'{key}' must be a STRING at {at}/{key}")
                elif intrinsics.looks_like_call(item):
                    try:
                        intrinsics.parse(item)
                    except intrinsics.IntrinsicSyntaxError as exc:
                        problems.append(f"SCHEMA_VALIDATION_FAILED: The value for the field "
                                        f"'{key}' must be a valid intrinsic function call "
                                        f"({exc}) at {at}/{key}")
                else:
                    _path(item, f"{at}/{key}", problems)
            else:
                _template(item, f"{at}/{key}", problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _template(item, f"{at}[{index}]", problems)


def _assign(value: Any, at: str, language: str, problems: list[str]) -> None:
    """Assign: an object of variable names; `.$` values are paths in JSONPath states."""
    if value is None:
        return
    if not isinstance(value, dict):
        problems.append(f"SCHEMA_VALIDATION_FAILED: 'Assign' must be an object at {at}")
        return
    for key in value:
        name = key[:-2] if language == "JSONPath" and key.endswith(".$") else key
        if paths.variable("$" + name) != (name, "$") or name == "states":
            problems.append(f"SCHEMA_VALIDATION_FAILED: '{key}' is not a valid variable "
                            f"name at {at}/{key}")
    if language == "JSONPath":
        _template(value, at, problems)


def _condition(rule: Any, at: str, problems: list[str]) -> None:
    if not isinstance(rule, dict) or "Condition" not in rule:
        problems.append(f"SCHEMA_VALIDATION_FAILED: A JSONata choice rule needs a "
                        f"'Condition' at {at}")
        return
    for key in sorted(set(rule) - {"Condition", "Next", "Comment", "Assign", "Output"}):
        problems.append(f"SCHEMA_VALIDATION_FAILED: Field '{key}' is not supported at {at}/{key}")
    _assign(rule.get("Assign"), f"{at}/Assign", "JSONata", problems)


def _handlers(value: Any, field: str, at: str, names: set[str], problems: list[str]) -> None:
    if not isinstance(value, list):
        problems.append(f"SCHEMA_VALIDATION_FAILED: '{field}' must be an array at {at}/{field}")
        return
    for index, handler in enumerate(value):
        where = f"{at}/{field}[{index}]"
        if not isinstance(handler, dict):
            problems.append(f"SCHEMA_VALIDATION_FAILED: must be an object at {where}")
            continue
        errors = handler.get("ErrorEquals")
        if not isinstance(errors, list) or not errors or \
                not all(isinstance(e, str) for e in errors):
            problems.append(f"SCHEMA_VALIDATION_FAILED: 'ErrorEquals' must be a non-empty "
                            f"array of strings at {where}/ErrorEquals")
        elif ALL in errors and (len(errors) > 1 or index != len(value) - 1):
            problems.append(f"SCHEMA_VALIDATION_FAILED: 'States.ALL' must appear alone in "
                            f"the last {'retrier' if field == 'Retry' else 'catcher'} "
                            f"at {where}/ErrorEquals")
        if field == "Catch":
            _target(handler.get("Next"), names, f"{where}/Next", problems)
            allowed = {"ErrorEquals", "Next", "ResultPath", "Comment", "Assign", "Output"}
        else:
            allowed = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate",
                       "MaxDelaySeconds", "JitterStrategy", "Comment"}
            for key, minimum in (("IntervalSeconds", 1), ("MaxAttempts", 0),
                                 ("MaxDelaySeconds", 1)):
                if key in handler:
                    _positive_int(handler[key], f"{where}/{key}", problems, minimum)
            rate = handler.get("BackoffRate", 2.0)
            if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 1:
                problems.append(f"SCHEMA_VALIDATION_FAILED: 'BackoffRate' must be a number "
                                f">= 1.0 at {where}/BackoffRate")
            if handler.get("JitterStrategy", "NONE") not in ("NONE", "FULL"):
                problems.append(f"SCHEMA_VALIDATION_FAILED: 'JitterStrategy' must be FULL or "
                                f"NONE at {where}/JitterStrategy")
        for key in handler:
            if key not in allowed:
                problems.append(f"SCHEMA_VALIDATION_FAILED: Field '{key}' is not supported "
                                f"at {where}/{key}")


def _task(state: dict[str, Any], at: str, names: set[str], problems: list[str],
          language: str = "JSONPath") -> None:
    if not isinstance(state.get("Resource"), str):
        problems.append(f"SCHEMA_VALIDATION_FAILED: The field 'Resource' is required at "
                        f"{at}/Resource")
    for key in ("TimeoutSeconds", "HeartbeatSeconds"):
        if key in state and jsonata_ql.expression(state[key]) is None:
            _positive_int(state[key], f"{at}/{key}", problems)
    if isinstance(state.get("TimeoutSeconds"), int) and isinstance(
            state.get("HeartbeatSeconds"), int) and \
            state["HeartbeatSeconds"] >= state["TimeoutSeconds"]:
        problems.append(f"SCHEMA_VALIDATION_FAILED: 'HeartbeatSeconds' must be smaller than "
                        f"'TimeoutSeconds' at {at}/HeartbeatSeconds")


def _choice(state: dict[str, Any], at: str, names: set[str], problems: list[str],
            language: str = "JSONPath") -> None:
    rules = state.get("Choices")
    if not isinstance(rules, list) or not rules:
        problems.append(f"SCHEMA_VALIDATION_FAILED: 'Choices' must be a non-empty array at "
                        f"{at}/Choices")
        return
    for index, rule in enumerate(rules):
        where = f"{at}/Choices[{index}]"
        if language == "JSONata":
            _condition(rule, where, problems)
        else:
            _rule(rule, where, problems)
        if isinstance(rule, dict):
            _target(rule.get("Next"), names, f"{where}/Next", problems)
    if "Default" in state:
        _target(state["Default"], names, f"{at}/Default", problems)


def _rule(rule: Any, at: str, problems: list[str], nested: bool = False) -> None:
    if not isinstance(rule, dict):
        problems.append(f"SCHEMA_VALIDATION_FAILED: A choice rule must be an object at {at}")
        return
    combinators = [key for key in choice.COMBINATORS if key in rule]
    operators = [key for key in rule if key in choice.OPERATORS]
    if len(combinators) + len(operators) != 1:
        problems.append(f"SCHEMA_VALIDATION_FAILED: A choice rule needs exactly one "
                        f"comparison operator or And/Or/Not at {at}")
        return
    extra = set(rule) - {*combinators, *operators, "Variable", "Comment"} - (
        set() if nested else {"Next", "Assign"})
    for key in sorted(extra):
        problems.append(f"SCHEMA_VALIDATION_FAILED: Field '{key}' is not supported at {at}/{key}")
    if combinators:
        key = combinators[0]
        value = rule[key]
        if key == "Not":
            _rule(value, f"{at}/Not", problems, nested=True)
        elif not isinstance(value, list) or not value:
            problems.append(f"SCHEMA_VALIDATION_FAILED: '{key}' must be a non-empty array at "
                            f"{at}/{key}")
        else:
            for index, sub in enumerate(value):
                _rule(sub, f"{at}/{key}[{index}]", problems, nested=True)
        return
    op = operators[0]
    if "Variable" not in rule:
        problems.append(f"SCHEMA_VALIDATION_FAILED: The field 'Variable' is required at {at}")
    else:
        _path(rule["Variable"], f"{at}/Variable", problems)
    value = rule[op]
    if op.endswith("Path"):
        _path(value, f"{at}/{op}", problems)
    elif op in choice.TESTS or op.startswith("Boolean"):
        ok = isinstance(value, bool)
    elif op.startswith("Numeric"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif op.startswith("Timestamp"):
        ok = choice.parse_timestamp(value) is not None
    else:
        ok = isinstance(value, str)
    if not op.endswith("Path") and not ok:
        problems.append(f"SCHEMA_VALIDATION_FAILED: The value of '{op}' has the wrong type "
                        f"at {at}/{op}")


def _wait(state: dict[str, Any], at: str, names: set[str], problems: list[str],
          language: str = "JSONPath") -> None:
    given = [k for k in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if k in state]
    if len(given) != 1:
        problems.append(f"SCHEMA_VALIDATION_FAILED: Exactly one of 'Seconds', 'Timestamp', "
                        f"'SecondsPath' or 'TimestampPath' is required at {at}")
    if "Seconds" in state and jsonata_ql.expression(state["Seconds"]) is None:
        _positive_int(state["Seconds"], f"{at}/Seconds", problems, 0)
    if "Timestamp" in state and jsonata_ql.expression(state["Timestamp"]) is None and \
            choice.parse_timestamp(state["Timestamp"]) is None:
        problems.append(f"SCHEMA_VALIDATION_FAILED: 'Timestamp' must be an RFC3339 timestamp "
                        f"at {at}/Timestamp")


def _fail(state: dict[str, Any], at: str, names: set[str], problems: list[str],
          language: str = "JSONPath") -> None:
    for key in ("Error", "Cause"):
        if key in state and key + "Path" in state:
            problems.append(f"SCHEMA_VALIDATION_FAILED: '{key}' and '{key}Path' are mutually "
                            f"exclusive at {at}")


def _parallel(state: dict[str, Any], at: str, names: set[str], problems: list[str],
              language: str = "JSONPath") -> None:
    branches = state.get("Branches")
    if not isinstance(branches, list) or not branches:
        problems.append(f"SCHEMA_VALIDATION_FAILED: 'Branches' must be a non-empty array at "
                        f"{at}/Branches")
        return
    for index, branch in enumerate(branches):
        if isinstance(branch, dict):
            _machine(branch, f"{at}/Branches[{index}]", problems, language)
        else:
            problems.append(f"SCHEMA_VALIDATION_FAILED: A branch must be an object at "
                            f"{at}/Branches[{index}]")


def _map(state: dict[str, Any], at: str, names: set[str], problems: list[str],
         language: str = "JSONPath") -> None:
    given = [k for k in ("ItemProcessor", "Iterator") if k in state]
    if len(given) != 1:
        problems.append(f"SCHEMA_VALIDATION_FAILED: Exactly one of 'ItemProcessor' or "
                        f"'Iterator' is required at {at}")
        return
    processor = state[given[0]]
    if not isinstance(processor, dict):
        problems.append(f"SCHEMA_VALIDATION_FAILED: '{given[0]}' must be an object at "
                        f"{at}/{given[0]}")
        return
    body = {k: v for k, v in processor.items() if k != "ProcessorConfig"}
    _machine(body, f"{at}/{given[0]}", problems, language)
    config = processor.get("ProcessorConfig", {})
    mode = config.get("Mode", "INLINE") if isinstance(config, dict) else None
    if mode not in ("INLINE", "DISTRIBUTED"):
        problems.append(f"SCHEMA_VALIDATION_FAILED: 'Mode' must be INLINE or DISTRIBUTED at "
                        f"{at}/{given[0]}/ProcessorConfig/Mode")
    elif mode == "DISTRIBUTED":
        _distributed(state, config, f"{at}/{given[0]}", at, problems)
    else:
        for key in ("ItemReader", "ItemBatcher", "ResultWriter", "Label"):
            if key in state:
                problems.append(f"SCHEMA_VALIDATION_FAILED: Field '{key}' is supported only "
                                f"in DISTRIBUTED mode at {at}/{key}")
    if "MaxConcurrency" in state and jsonata_ql.expression(state["MaxConcurrency"]) is None:
        _positive_int(state["MaxConcurrency"], f"{at}/MaxConcurrency", problems, 0)
    if "ToleratedFailureCount" in state:
        _positive_int(state["ToleratedFailureCount"], f"{at}/ToleratedFailureCount",
                      problems, 0)
    pct = state.get("ToleratedFailurePercentage", 0)
    if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
        problems.append(f"SCHEMA_VALIDATION_FAILED: 'ToleratedFailurePercentage' must be "
                        f"between 0 and 100 at {at}/ToleratedFailurePercentage")


_READERS = ("arn:aws:states:::s3:getObject", "arn:aws:states:::s3:listObjectsV2")


def _distributed(state: dict[str, Any], config: dict[str, Any], where: str, at: str,
                 problems: list[str]) -> None:
    """ProcessorConfig, ItemReader, ItemBatcher, ResultWriter and Label of a distributed Map."""
    if config.get("ExecutionType") not in ("STANDARD", "EXPRESS"):
        problems.append(f"SCHEMA_VALIDATION_FAILED: 'ExecutionType' must be STANDARD or "
                        f"EXPRESS at {where}/ProcessorConfig/ExecutionType")
    for key in set(config) - {"Mode", "ExecutionType"}:
        problems.append(f"SCHEMA_VALIDATION_FAILED: Field '{key}' is not supported at "
                        f"{where}/ProcessorConfig/{key}")
    reader = state.get("ItemReader")
    if reader is not None and (not isinstance(reader, dict) or
                               reader.get("Resource") not in _READERS):
        problems.append(f"SCHEMA_VALIDATION_FAILED: The ItemReader's 'Resource' must be one "
                        f"of {', '.join(_READERS)} at {at}/ItemReader/Resource")
    elif isinstance(reader, dict):
        kind = (reader.get("ReaderConfig") or {}).get("InputType")
        if kind is not None and kind not in ("JSON", "JSONL", "CSV", "MANIFEST"):
            problems.append(f"SCHEMA_VALIDATION_FAILED: 'InputType' must be JSON, JSONL, CSV "
                            f"or MANIFEST at {at}/ItemReader/ReaderConfig/InputType")
    batcher = state.get("ItemBatcher")
    if batcher is not None:
        if not isinstance(batcher, dict) or not set(batcher) & {
                "MaxItemsPerBatch", "MaxItemsPerBatchPath", "MaxInputBytesPerBatch",
                "MaxInputBytesPerBatchPath"}:
            problems.append(f"SCHEMA_VALIDATION_FAILED: The ItemBatcher needs "
                            f"MaxItemsPerBatch or MaxInputBytesPerBatch at {at}/ItemBatcher")
        else:
            for key in ("MaxItemsPerBatch", "MaxInputBytesPerBatch"):
                if key in batcher and jsonata_ql.expression(batcher[key]) is None:
                    _positive_int(batcher[key], f"{at}/ItemBatcher/{key}", problems)
    writer = state.get("ResultWriter")
    if writer is not None:
        _result_writer(writer, f"{at}/ResultWriter", problems)
    label = state.get("Label")
    if label is not None and (not isinstance(label, str) or not 1 <= len(label) <= 40 or
                              any(c in label for c in ' <>{}[]?*"#%\\^|~`$&,;:/')):
        problems.append(f"SCHEMA_VALIDATION_FAILED: 'Label' must be 1-40 characters without "
                        f"special characters at {at}/Label")


def _result_writer(writer: Any, at: str, problems: list[str]) -> None:
    """Resource with Parameters (or Arguments), a WriterConfig, or both (AWS's combinations)."""
    if not isinstance(writer, dict) or not writer:
        problems.append(f"SCHEMA_VALIDATION_FAILED: The ResultWriter must name a Resource or "
                        f"a WriterConfig at {at}")
        return
    config = writer.get("WriterConfig")
    if "Resource" not in writer and config is None:
        problems.append(f"SCHEMA_VALIDATION_FAILED: The ResultWriter needs a Resource with "
                        f"Parameters, a WriterConfig, or both at {at}")
    if "Resource" in writer and writer["Resource"] != "arn:aws:states:::s3:putObject":
        problems.append(f"SCHEMA_VALIDATION_FAILED: The ResultWriter's 'Resource' must be "
                        f"arn:aws:states:::s3:putObject at {at}/Resource")
    if config is None:
        return
    if not isinstance(config, dict):
        problems.append(f"SCHEMA_VALIDATION_FAILED: 'WriterConfig' must be an object at "
                        f"{at}/WriterConfig")
        return
    for key, allowed in (("Transformation", TRANSFORMATIONS), ("OutputType", OUTPUT_TYPES)):
        if key not in config:
            problems.append(f"SCHEMA_VALIDATION_FAILED: The field '{key}' is required at "
                            f"{at}/WriterConfig")
        elif config[key] not in allowed:
            problems.append(f"SCHEMA_VALIDATION_FAILED: '{key}' must be one of "
                            f"{', '.join(allowed)} at {at}/WriterConfig/{key}")
    for key in set(config) - {"Transformation", "OutputType"}:
        problems.append(f"SCHEMA_VALIDATION_FAILED: Field '{key}' is not supported at "
                        f"{at}/WriterConfig/{key}")


_CHECKS = {"Task": _task, "Choice": _choice, "Wait": _wait, "Fail": _fail,
           "Parallel": _parallel, "Map": _map}
