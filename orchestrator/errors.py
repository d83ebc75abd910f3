"""The three kinds of errors, kept apart.

* :class:`UserError` and its subclasses: the user's mistake (a broken tool card, a bad plan,
  an empty prompt, a missing file). The message says what to fix.
* :class:`RunFailure` and its subclasses: something failed during a run (a tool crashed, the
  budget ran out). Recorded in the trace; the run goes on or ends cleanly.
* :class:`Retryable`: a signal the routing loop recovers from (try the next candidate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BudgetExceeded",
    "CardDefect",
    "CardError",
    "ConfigError",
    "MissingInput",
    "NoCapableTool",
    "PlanError",
    "RunCancelled",
    "Retryable",
    "RunFailure",
    "ToolFailed",
    "UserError",
]


class UserError(Exception):
    """The user's mistake: the message says what to fix."""


class ConfigError(UserError):
    """A configuration value is missing or malformed."""


@dataclass(frozen=True)
class CardDefect:
    """One defect of one tool card: the file, the field, and what is wrong."""

    path: Path | None
    field: str
    message: str

    def __str__(self) -> str:
        where = str(self.path) if self.path else "<card>"
        return f"{where}: {self.field}: {self.message}"


class CardError(UserError):
    """One or more tool cards are broken."""

    def __init__(self, defects: list[CardDefect]) -> None:
        self.defects = defects
        super().__init__("\n".join(str(d) for d in defects))


class PlanError(UserError):
    """A plan is malformed: unknown task, cycle, dangling reference, bad argument."""


class MissingInput(PlanError):
    """A step needs an input of a kind (``kind``: image, audio, text) the request does not give."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class NoCapableTool(UserError):
    """No available tool card can serve a subtask or a request."""


class RunFailure(Exception):
    """A failure during a run, recorded in the trace."""


class RunCancelled(RunFailure):
    """The user cancelled a run; what finished is kept and the run can be resumed."""


class BudgetExceeded(RunFailure):
    """A call could not be made because it would break a budget limit."""

    def __init__(self, limit: str, needed: object, left: object) -> None:
        self.limit = limit
        self.needed = needed
        self.left = left
        super().__init__(f"budget limit '{limit}' reached: needs {needed}, {left} left")


@dataclass
class ToolFailed(RunFailure):
    """A tool call failed (raised, crashed, timed out, or returned bad output)."""

    card: str
    reason: str
    detail: str = field(default="")

    def __post_init__(self) -> None:
        super().__init__(f"{self.card}: {self.reason}")


class Retryable(Exception):
    """A signal the routing loop recovers from by trying the next candidate."""
