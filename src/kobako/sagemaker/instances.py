"""ml.* instance types as AWS publishes them: vCPUs, memory (GiB) and GPUs.

A job asks for an instance type; kobako gives its process that many CPUs and that
memory limit (never more than this machine has). Unlisted `ml.<family>.<size>` types
are sized from their size suffix (large = 2 vCPUs, xlarge = 4, Nxlarge = 4N, 4 GiB
per vCPU), so new families work without a table update.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceSpec:
    vcpus: int
    memory_gib: float
    gpus: int = 0


def _family(sizes: Mapping[str, tuple[int, float, int]]) -> dict[str, InstanceSpec]:
    return {size: InstanceSpec(c, m, g) for size, (c, m, g) in sizes.items()}


_GENERAL = {"large": (2, 8, 0), "xlarge": (4, 16, 0), "2xlarge": (8, 32, 0),
            "4xlarge": (16, 64, 0), "8xlarge": (32, 128, 0), "12xlarge": (48, 192, 0),
            "16xlarge": (64, 256, 0), "24xlarge": (96, 384, 0), "32xlarge": (128, 512, 0)}
_COMPUTE = {"large": (2, 4, 0), "xlarge": (4, 8, 0), "2xlarge": (8, 16, 0),
            "4xlarge": (16, 32, 0), "9xlarge": (36, 72, 0), "12xlarge": (48, 96, 0),
            "18xlarge": (72, 144, 0), "24xlarge": (96, 192, 0)}
_MEMORY = {"large": (2, 16, 0), "xlarge": (4, 32, 0), "2xlarge": (8, 64, 0),
           "4xlarge": (16, 128, 0), "8xlarge": (32, 256, 0), "12xlarge": (48, 384, 0),
           "16xlarge": (64, 512, 0), "24xlarge": (96, 768, 0)}

TABLE: dict[str, dict[str, InstanceSpec]] = {
    "t2": _family({"medium": (2, 4, 0), "large": (2, 8, 0), "xlarge": (4, 16, 0),
                   "2xlarge": (8, 32, 0)}),
    "t3": _family({"medium": (2, 4, 0), "large": (2, 8, 0), "xlarge": (4, 16, 0),
                   "2xlarge": (8, 32, 0)}),
    "m4": _family({"xlarge": (4, 16, 0), "2xlarge": (8, 32, 0), "4xlarge": (16, 64, 0),
                   "10xlarge": (40, 160, 0), "16xlarge": (64, 256, 0)}),
    "m5": _family(_GENERAL),
    "m6i": _family(_GENERAL),
    "m7i": _family(_GENERAL),
    "c4": _family({"xlarge": (4, 7.5, 0), "2xlarge": (8, 15, 0), "4xlarge": (16, 30, 0),
                   "8xlarge": (36, 60, 0)}),
    "c5": _family(_COMPUTE),
    "c6i": _family(_COMPUTE),
    "r5": _family(_MEMORY),
    "p2": _family({"xlarge": (4, 61, 1), "8xlarge": (32, 488, 8), "16xlarge": (64, 732, 16)}),
    "p3": _family({"2xlarge": (8, 61, 1), "8xlarge": (32, 244, 4), "16xlarge": (64, 488, 8)}),
    "p3dn": _family({"24xlarge": (96, 768, 8)}),
    "p4d": _family({"24xlarge": (96, 1152, 8)}),
    "p4de": _family({"24xlarge": (96, 1152, 8)}),
    "p5": _family({"48xlarge": (192, 2048, 8)}),
    "g4dn": _family({"xlarge": (4, 16, 1), "2xlarge": (8, 32, 1), "4xlarge": (16, 64, 1),
                     "8xlarge": (32, 128, 1), "12xlarge": (48, 192, 4),
                     "16xlarge": (64, 256, 1)}),
    "g5": _family({"xlarge": (4, 16, 1), "2xlarge": (8, 32, 1), "4xlarge": (16, 64, 1),
                   "8xlarge": (32, 128, 1), "12xlarge": (48, 192, 4), "16xlarge": (64, 256, 1),
                   "24xlarge": (96, 384, 4), "48xlarge": (192, 768, 8)}),
    "g6": _family({"xlarge": (4, 16, 1), "2xlarge": (8, 32, 1), "4xlarge": (16, 64, 1),
                   "8xlarge": (32, 128, 1), "12xlarge": (48, 192, 4), "16xlarge": (64, 256, 1),
                   "24xlarge": (96, 384, 4), "48xlarge": (192, 768, 8)}),
}

_TYPE = re.compile(r"^ml\.([a-z0-9-]+)\.([0-9]*)(medium|large|xlarge|metal)$")


def lookup(instance_type: str) -> InstanceSpec | None:
    """The published spec of `instance_type`; None if it is not an ml.* type at all."""
    found = _TYPE.match(instance_type or "")
    if not found:
        return None
    family, count, unit = found.groups()
    known = TABLE.get(family, {}).get(f"{count}{unit}")
    if known is not None:
        return known
    vcpus = {"medium": 2, "large": 2, "xlarge": 4, "metal": 96}[unit] * int(count or 1)
    return InstanceSpec(vcpus, vcpus * 4.0)
