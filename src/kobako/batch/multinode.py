"""Multi-node parallel (MNP) jobs: node ranges, their validation, and node overrides.

A job definition of type `multinode` carries `nodeProperties` {numNodes, mainNode,
nodeRangeProperties [{targetNodes, container}]}; SubmitJob may change the node count
and override containers per range (`nodeOverrides`). Everything here is pure: it turns
those into one resolved container per node, or raises AWS's ClientException.
"""

from __future__ import annotations

import re
from typing import Any

from kobako.batch.common import client_error

# AWS's default limit (the instances of one ECS cluster); kobako runs nodes on one host.
MAX_NODES = 1000
_RANGE = re.compile(r"^(\d*)(:(\d*))?$")


def parse_target(text: Any, num_nodes: int) -> tuple[int, int]:
    """`targetNodes` as (first, last) node index: "n", "a:b", "a:", ":b" or ":"; an open
    end is the job's last node (AWS's reading of the API reference)."""
    raw = str(text if text is not None else "").strip()
    match = _RANGE.match(raw)
    if not raw or match is None or (match.group(2) is None and not match.group(1)):
        raise client_error(f"Invalid targetNodes {raw!r}: a node range is n, start:end, "
                           "start:, :end or :")
    if match.group(2) is None:
        first = last = int(match.group(1))
    else:
        first = int(match.group(1)) if match.group(1) else 0
        last = int(match.group(3)) if match.group(3) else num_nodes - 1
    if first > last:
        raise client_error(f"Invalid targetNodes {raw!r}: the range ends before it starts")
    if last >= num_nodes:
        raise client_error(f"targetNodes {raw!r} is outside the job's nodes "
                           f"(0:{num_nodes - 1} for numNodes {num_nodes})")
    return first, last


def _open_ended(text: Any) -> bool:
    raw = str(text or "").strip()
    return ":" in raw and raw.rsplit(":", 1)[1] == ""


def _range_start(text: Any) -> int:
    head = str(text or "").strip().split(":", 1)[0]
    return int(head) if head.isdigit() else 0


def _count(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise client_error(f"{what} is required and must be an integer") from None


def check_node_properties(props: Any, num_nodes: int | None = None) -> None:
    """Register-time (and submit-time, with the overridden count) checks: numNodes,
    mainNode below it, and node ranges that are valid, name a container, and together
    account for every node."""
    if not isinstance(props, dict):
        raise client_error("nodeProperties is required for a job definition of type "
                           "multinode")
    count = num_nodes if num_nodes is not None else _count(props.get("numNodes"),
                                                           "nodeProperties.numNodes")
    if not 1 <= count <= MAX_NODES:
        raise client_error(f"nodeProperties.numNodes must be between 1 and {MAX_NODES}")
    main = _count(props.get("mainNode"), "nodeProperties.mainNode")
    if not 0 <= main < count:
        raise client_error(f"nodeProperties.mainNode ({main}) must be less than the number "
                           f"of nodes ({count})")
    ranges = props.get("nodeRangeProperties") or []
    if not ranges:
        raise client_error("nodeProperties.nodeRangeProperties must name at least one node "
                           "range")
    covered: set[int] = set()
    for item in ranges:
        first, last = parse_target(item.get("targetNodes"), count)
        if item.get("ecsProperties") or item.get("eksProperties"):
            raise client_error("kobako runs node ranges with container properties; "
                               "ecsProperties and eksProperties are not supported")
        if not isinstance(item.get("container"), dict):
            raise client_error(f"Node range {item.get('targetNodes')} must specify "
                               "container properties")
        covered.update(range(first, last + 1))
    missing = [i for i in range(count) if i not in covered]
    if missing:
        shown = ", ".join(str(i) for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise client_error(f"Node ranges must account for all nodes (0:{count - 1}); "
                           f"nodes {shown} are in no node range")


def effective_properties(props: dict[str, Any], overrides: dict[str, Any] | None
                         ) -> dict[str, Any]:
    """The definition's nodeProperties with SubmitJob's `nodeOverrides.numNodes` applied
    (AWS's three conditions: an open-ended range, its start and mainNode below the new
    count), checked again for the new count."""
    out = {**props, "numNodes": int(props["numNodes"])}
    wanted = (overrides or {}).get("numNodes")
    if wanted is not None:
        count = _count(wanted, "nodeOverrides.numNodes")
        ranges = props.get("nodeRangeProperties") or []
        opened = [r for r in ranges if _open_ended(r.get("targetNodes"))]
        if not opened:
            raise client_error("nodeOverrides.numNodes needs a node range with an open upper "
                               "boundary (such as : or n:) in the job definition")
        if not any(_range_start(r.get("targetNodes")) < count for r in opened):
            raise client_error("The lower boundary of the open node range in the job "
                               f"definition must be less than numNodes ({count})")
        if int(props["mainNode"]) >= count:
            raise client_error(f"The main node index ({props['mainNode']}) in the job "
                               f"definition must be less than numNodes ({count})")
        out["numNodes"] = count
    check_node_properties(out, out["numNodes"])
    return out


def node_containers(props: dict[str, Any]) -> list[dict[str, Any]]:
    """Each node's containerProperties: of the narrowest node range that holds it (nested
    ranges override the wider ones, as in AWS: 4:5 inside 0:10); on a tie, the later."""
    count = int(props["numNodes"])
    chosen: list[tuple[int, dict[str, Any]] | None] = [None] * count
    for item in props.get("nodeRangeProperties") or []:
        first, last = parse_target(item.get("targetNodes"), count)
        width = last - first
        for index in range(first, last + 1):
            current = chosen[index]
            if current is None or width <= current[0]:
                chosen[index] = (width, item["container"])
    return [dict(c[1]) for c in chosen if c is not None]


def node_overrides(overrides: dict[str, Any] | None, count: int) -> list[dict[str, Any]]:
    """Each node's containerOverrides from `nodePropertyOverrides`, merged in order (a
    later override's command and resources win; environment variables accumulate)."""
    per_node: list[dict[str, Any]] = [{} for _ in range(count)]
    for item in (overrides or {}).get("nodePropertyOverrides") or []:
        first, last = parse_target(item.get("targetNodes"), count)
        if item.get("ecsPropertiesOverride") or item.get("eksPropertiesOverride"):
            raise client_error("kobako supports containerOverrides in node overrides only")
        change = item.get("containerOverrides") or {}
        for index in range(first, last + 1):
            merged = per_node[index]
            for key in ("command", "vcpus", "memory", "instanceType"):
                if change.get(key) is not None:
                    merged[key] = change[key]
            for key in ("environment", "resourceRequirements"):
                if change.get(key):
                    merged[key] = [*(merged.get(key) or []), *change[key]]
    return per_node
