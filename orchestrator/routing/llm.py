"""The Router-R1-style LLM router policy: an LLM reads the subtask and routes it.

Registered as ``llm`` in :data:`orchestrator.routing.policy.POLICIES`. It drives the same actions as
the default policy through the openai SDK, with Router-R1's ``<think>``/``<route>``/``<answer>``
protocol; its reply is validated and a malformed one falls back to the default policy.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from orchestrator.budget import Cost
from orchestrator.errors import BudgetExceeded, MalformedDecision
from orchestrator.llm import LOCAL_KEY, LlmClient
from orchestrator.routing.policy import Decision, DefaultPolicy, StepView, checked_decision

__all__ = ["LLMPolicy"]

_SYSTEM = """You route a subtask among models, Router-R1 style. Think inside <think>...</think>,
then reply with exactly one of:
<route>MODEL</route>            call MODEL (a candidate name) on the subtask
<route>escalate MODEL</route>   call a stronger MODEL because the answers so far are doubtful
<route>ask_second MODEL</route> ask MODEL for a second opinion to compare answers
<answer>N</answer>              accept answer number N (it is final)
<answer>replan</answer>         re-plan the request;  <answer>finish</answer>  stop the run
Only call candidates marked fits=yes; never call one that already answered."""

_TAG = re.compile(r"<(route|answer)>\s*(.*?)\s*</\1>", re.S)


@dataclass
class LLMPolicy:
    """A Router-R1-style policy: an LLM reads the subtask, candidates and answers, and routes.

    It speaks through the openai SDK to any OpenAI-compatible endpoint. Its reply is parsed and
    validated; anything malformed (no tag, unknown model, a call that does not fit) falls back
    to ``fallback`` and the reason says so. The router's own calls are capped by ``max_tokens``
    and ``timeout_s``, and paid from the run's budget like model calls: before each call its
    expected cost (``usd_per_call`` + ``usd_per_1k_tokens`` x an upper bound of its tokens,
    ``latency_s``, one call) is reserved on the view's ledger, after it the real cost is
    settled; a call that does not fit is not made (the fallback decides, and says so).
    """

    model: str
    base_url: str | None = None
    api_key: str | None = None
    max_tokens: int = 256
    timeout_s: float = 30.0
    fallback: Any = field(default_factory=DefaultPolicy)
    name: str = "llm"
    client: Any = None
    usd_per_call: Decimal = Decimal(0)
    usd_per_1k_tokens: Decimal = Decimal(0)  # input and output alike
    latency_s: float = 1.0  # expected seconds per router call (reserved on a time budget)

    def _llm(self) -> LlmClient:
        """The project's LLM client for the router's endpoint (``client``: the SDK client)."""
        key = self.api_key or LOCAL_KEY
        return LlmClient(self.base_url, self.model, key, caller="LLM router", client=self.client)

    def prompt(self, view: StepView) -> str:
        lines = [f"Subtask ({view.task}): {view.instruction[:2000]}", "Candidates:"]
        for o in view.options:
            lines.append(
                f"- {o.card}: quality {o.quality:.3f}, ~${o.usd:.6f}, "
                f"fits={'yes' if o.fits else 'no'}"
            )
        lines.append(f"Budget left: {view.budget_left}")
        if view.answers:
            lines.append("Answers so far:")
            for n, a in enumerate(view.answers, 1):
                body = a.text[:500] if a.status == "ok" else f"{a.status}: {a.error}"
                lines.append(f"{n}. {a.card}: {body}")
        return "\n".join(lines)

    def _usd(self, tokens: int) -> Decimal:
        return Decimal(self.usd_per_call) + Decimal(self.usd_per_1k_tokens) * tokens / 1000

    def _complete(self, prompt: str, max_tokens: int, timeout: float) -> tuple[str, Any]:
        llm = self._llm()
        response = llm.create(
            [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            timeout_s=timeout,
            temperature=0,
        )
        self.client = llm.client  # made on the first call, kept for the next
        return response.choices[0].message.content or "", getattr(response, "usage", None)

    def ask(self, view: StepView) -> str:
        """The router LLM's reply for ``view``, its call paid from ``view.ledger`` if any.

        Raises BudgetExceeded (nothing is called) when the call cannot fit the budget left.
        """
        prompt = self.prompt(view)
        ledger = view.ledger
        if ledger is None:
            return self._complete(prompt, self.max_tokens, self.timeout_s)[0]
        # An upper bound of the prompt's tokens: a byte-level tokenizer spends at most one
        # token per byte, plus the chat template's.
        input_tokens = len((_SYSTEM + prompt).encode("utf-8")) + 64
        max_tokens = self.max_tokens
        tokens_left = ledger.left().get("tokens")
        if tokens_left is not None:
            max_tokens = max(1, min(max_tokens, int(tokens_left) - input_tokens))
        expected = Cost(
            usd=self._usd(input_tokens + max_tokens),
            seconds=self.latency_s,
            tokens=input_tokens + max_tokens,
            calls=1,
        )
        reservation = ledger.reserve(expected)
        timeout = self.timeout_s
        seconds_left = ledger.headroom_seconds()
        if seconds_left is not None:
            timeout = max(0.1, min(timeout, seconds_left))
        started = time.monotonic()
        used = input_tokens + max_tokens  # charged in full unless the endpoint reports usage
        try:
            reply, usage = self._complete(prompt, max_tokens, timeout)
            if usage is not None and getattr(usage, "total_tokens", None):
                used = int(usage.total_tokens)
            return reply
        finally:
            ledger.settle(
                reservation,
                Cost(
                    usd=self._usd(used),
                    seconds=time.monotonic() - started,
                    tokens=used,
                    calls=1,
                ),
            )

    def parse(self, reply: str, view: StepView, *, started: bool) -> Decision:
        """The decision a reply states; raise MalformedDecision when it states none."""
        think = re.search(r"<think>(.*?)</think>", reply, re.S)
        reason = " ".join((think.group(1) if think else "").split())[:300] or "LLM router"
        match = _TAG.search(reply)
        if match is None:
            raise MalformedDecision("no <route> or <answer> tag in the router's reply")
        tag, body = match.group(1), match.group(2).strip()
        if tag == "answer":
            if body in ("replan", "finish"):
                return Decision(body, reason, policy=self.name)
            if not body.isdigit() or not 1 <= int(body) <= len(view.answers):
                raise MalformedDecision(f"<answer> must name an answer number, got {body!r}")
            return Decision("accept", reason, use=view.answers[int(body) - 1].seq, policy=self.name)
        action, _, card = body.partition(" ") if " " in body else ("", "", body)
        if not action:
            action = "retry" if started else "start"
        option = view.option(card.strip())
        if option is None:
            raise MalformedDecision(f"<route> names no candidate: {body!r}")
        return Decision(action, reason, candidate=option.index, policy=self.name)

    def _route(self, view: StepView, *, started: bool) -> Decision:
        fallback = self.fallback.decide(view) if started else self.fallback.start(view)
        try:
            reply = self.ask(view)
            return checked_decision(self.parse(reply, view, started=started), view, started=started)
        except MalformedDecision as exc:
            why = f"LLM router output rejected ({exc}); default policy: "
        except BudgetExceeded as exc:
            why = f"the LLM router's own call does not fit the budget ({exc}); default policy: "
        except Exception as exc:  # noqa: BLE001 - any endpoint failure falls back, recorded
            why = f"LLM router unreachable ({type(exc).__name__}: {exc}); default policy: "
        return replace(fallback, reason=why + fallback.reason, policy=f"{self.name}->fallback")

    def start(self, view: StepView) -> Decision:
        return self._route(view, started=False)

    def decide(self, view: StepView) -> Decision:
        return self._route(view, started=True)
