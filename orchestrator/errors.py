"""The three kinds of errors, kept apart.

* :class:`UserError` and its subclasses: the user's mistake (a broken tool card, a bad plan,
  an empty prompt, a missing file). The message says what to fix.
* :class:`RunFailure` and its subclasses: something failed during a run (a tool crashed, the
  budget ran out). Recorded in the trace; the run goes on or ends cleanly.
* :class:`Retryable`: a signal the routing loop recovers from (try the next candidate).

The rest keep the built-in base their callers catch: a registry lookup's ``KeyError``
(:class:`UnknownPlanner`, :class:`UnknownBackend`, :class:`UnknownScorer`,
:class:`UnknownExecutor`), a policy's ``ValueError``
(:class:`MalformedDecision`, recovered by a fallback), and the failures one part reports to
the part that called it (:class:`ChatEndpointError`, every failure of an LLM call as
:mod:`orchestrator.llm` maps it, with :class:`CallTimedOut`, also a ``TimeoutError``, when it
did not answer in time; :class:`FilesRefused`; and :class:`RequestRejected`, which the server
answers in OpenAI's error shape).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BudgetExceeded",
    "CallTimedOut",
    "CardDefect",
    "CardError",
    "ChatEndpointError",
    "ConfigError",
    "FilesRefused",
    "InvalidBudget",
    "MalformedDecision",
    "MissingInput",
    "NoCapableTool",
    "NotServable",
    "PlanError",
    "PluginError",
    "RequestRejected",
    "Retryable",
    "RunCancelled",
    "RunFailure",
    "RunInProgress",
    "SandboxRefused",
    "ToolFailed",
    "UnknownBackend",
    "UnknownPlanner",
    "UnknownExecutor",
    "UnknownPolicy",
    "UnknownScorer",
    "UserError",
]


class UserError(Exception):
    """The user's mistake: the message says what to fix."""


class ConfigError(UserError):
    """A configuration value is missing or malformed."""


class SandboxRefused(ConfigError):
    """Full isolation is required by the configuration but this host cannot give it."""


class InvalidBudget(UserError, ValueError):
    """A budget limit that is not a finite, non-negative value of the right type."""


class UnknownPolicy(UserError):
    """No router policy is registered under this name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown router policy '{name}'; known: {', '.join(sorted(known))}")


class RunInProgress(UserError):
    """Another process is running or resuming this run."""


class NotServable(UserError):
    """The card cannot be served as a chat model (wrong task, no text in/out, unavailable)."""


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


class UnknownPlanner(KeyError):
    """No planner is registered under this name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown planner '{name}'; known: {', '.join(sorted(known))}")


class UnknownScorer(KeyError):
    """No selection scorer is registered under this name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown scorer '{name}'; known: {', '.join(sorted(known))}")


class UnknownExecutor(KeyError):
    """No executor is registered under this name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown executor '{name}'; known: {', '.join(sorted(known))}")


class PluginError(UserError):
    """An installed package's entry point could not be loaded; the message names the package."""


class UnknownBackend(KeyError):
    """No backend is registered under this kind."""

    def __init__(self, kind: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown backend kind '{kind}'; known: {', '.join(sorted(known))}")


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


class ChatEndpointError(RuntimeError):
    """The chat endpoint refused or failed a request; the message says which and why.

    ``status``: the HTTP status it answered with, None when it did not answer (unreachable).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CallTimedOut(ChatEndpointError, TimeoutError):
    """An LLM call did not answer within the seconds it was given."""


class FilesRefused(Exception):
    """The files a call returned break a limit, or one is not a plain file with a plain name."""


class Retryable(Exception):
    """A signal the routing loop recovers from by trying the next candidate."""


class MalformedDecision(ValueError):
    """A policy returned a decision that does not fit the subtask (recovered by fallback)."""


class RequestRejected(Exception):
    """A request the server answers with an error in OpenAI's shape.

    The servers' wire module (``orchestrator.server.wire``) turns it into the error body.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type_ = type_
        self.param = param
        self.code = code
