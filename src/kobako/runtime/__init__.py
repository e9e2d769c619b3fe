"""Where jobs run: a small interface (`base`) and its backends (`process`, later more)."""

from kobako.runtime.base import Attempt, AttemptSpec, OutputLine, Runtime, StartError
from kobako.runtime.process import ProcessRuntime

__all__ = [
    "Attempt", "AttemptSpec", "OutputLine", "ProcessRuntime", "Runtime",
    "StartError",
]
