"""Which text a streamed chat answer sends as content deltas while its run goes.

A run streams the text its text-generation steps make (``TokenDelta``). ``orchestrator serve``
sends the pieces of one attempt as ``delta.content``, as they come, when the step is a final one
of the plan (no other step reads it: its text is what the answer says). One attempt at a time:
the pieces of other steps stay in the ``orchestrator`` events only. When that attempt is
discarded (``TokensDiscarded``: it failed, or the router retries), a short note saying so is
sent and a later attempt may stream again.

Once the run ends, :meth:`AnswerStream.rest` is what is left to send of the answer: the part
after the streamed text when the answer holds it (the answer adds who wrote it and its caveats
around it; the prefix, "card answered:", is not sent again), else the whole answer after a blank
line. So the content a client assembles is the streamed text, then the rest of the answer.
"""

from __future__ import annotations

from typing import Any

from orchestrator.events import PlanMade, TokenDelta, TokensDiscarded

__all__ = ["AnswerStream"]


class AnswerStream:
    """Follows one run's events; says which text to send as content, and what is left at the end."""

    def __init__(self) -> None:
        self.finals: set[str] | None = None  # the plan's final steps (None: no plan yet)
        self.attempt: tuple[str, int] | None = None  # the attempt whose text is being sent
        self.kept = ""  # the text of that attempt sent so far
        self.sent = ""  # every content sent while the run went

    def content(self, event: Any) -> str:
        """The content delta ``event`` brings ("" for none)."""
        if isinstance(event, PlanMade):
            subtasks = event.plan.get("subtasks", [])
            read = {dep for s in subtasks for dep in s.get("deps", [])}
            self.finals = {s["id"] for s in subtasks} - read
            return ""
        if isinstance(event, TokenDelta):
            key = (event.step, event.seq)
            final = self.finals is None or event.step in self.finals
            if not final or self.attempt not in (None, key):
                return ""
            self.attempt = key
            return self._send(event.text)
        if isinstance(event, TokensDiscarded) and self.attempt == (event.step, event.seq):
            self.attempt, self.kept = None, ""
            note = f"\n\n(The text above was discarded: {event.reason}.)\n\n"
            self.sent += note
            return note
        return ""

    def _send(self, text: str) -> str:
        self.kept += text
        self.sent += text
        return text

    def rest(self, answer: str) -> str:
        """What is left to send of ``answer`` after the content streamed while the run went."""
        if not self.sent:
            return answer
        if self.kept.strip() and self.kept in answer:
            return answer[answer.index(self.kept) + len(self.kept) :]
        return "\n\n" + answer
