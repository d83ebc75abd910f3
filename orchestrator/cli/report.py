"""Human-readable reports of runs, progress events and cards (rich), for the CLI and chat."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.cards.zoo import Zoo, ZooEntry
from orchestrator.events import (
    Decided,
    Event,
    PlanMade,
    PullProgress,
    Selected,
    StepFinished,
    StepStarted,
    TokenDelta,
    TokensDiscarded,
)
from orchestrator.pipeline.answer import render_value
from orchestrator.pipeline.orchestrator import RunResult

__all__ = [
    "STREAMED_ABOVE",
    "EventPrinter",
    "StreamedText",
    "print_card",
    "print_cards",
    "print_result",
    "print_run",
    "request_lines",
    "usd",
]


def usd(amount: object) -> str:
    """Dollars for people: fixed-point, to a millionth of a cent."""
    return f"${Decimal(str(amount)):.8f}"


def _args_text(args: dict[str, Any]) -> str:
    parts = []
    for io_type, arg in args.items():
        kind = arg["kind"]
        if kind == "ref":
            parts.append(f"{io_type}=<output of {arg['step']}>")
        elif kind == "compose":
            parts.append(f"{io_type}=<answer of {', '.join(arg['steps'])}>")
        elif kind == "file":
            parts.append(f"{io_type}={arg['path']}")
        else:
            parts.append(f"{io_type}={arg['value']!r}")
    return ", ".join(parts)


def pull_line(event: PullProgress) -> str:
    """``pulling blip-captioner (Salesforce/...): 45.3 of 990.2 MB (5%)``."""
    done, total = event.done_bytes / 1e6, event.total_bytes / 1e6
    share = 100 * event.done_bytes // max(event.total_bytes, 1)
    return f"pulling {event.card} ({event.repo}): {done:.1f} of {total:.1f} MB ({share}%)"


STREAMED_ABOVE = "(streamed above)"
"""What an answer says in place of the text that was already streamed."""


class StreamedText:
    """The text steps streamed (``TokenDelta``) by attempt; discarded attempts are dropped."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, int], list[str]] = {}

    def add(self, event: TokenDelta) -> bool:
        """Keep a piece; True when it is the first of its attempt."""
        pieces = self.parts.setdefault((event.step, event.seq), [])
        pieces.append(event.text)
        return len(pieces) == 1

    def discard(self, event: TokensDiscarded) -> bool:
        """Drop an attempt's text; True when some had come."""
        return self.parts.pop((event.step, event.seq), None) is not None

    def text(self, step: str, seq: int) -> str | None:
        """The text one attempt streamed (None: it streamed nothing)."""
        pieces = self.parts.get((step, seq))
        return None if pieces is None else "".join(pieces)

    def in_answer(self, answer: str) -> str:
        """The answer with each kept streamed text named, not repeated (it was shown)."""
        for pieces in self.parts.values():
            text = "".join(pieces)
            if text.strip() and text in answer:
                answer = answer.replace(text, STREAMED_ABOVE, 1)
        return answer


class EventPrinter:
    """Prints progress events as a run goes: the plan, each step's start and end, decisions.

    A step's streamed text (``TokenDelta``) is printed as it comes, on its own line after
    "writes:"; an attempt whose text is discarded says so. :attr:`streamed` keeps what was
    shown, for :func:`print_result` not to print it again.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.streamed = StreamedText()
        self.line_open = False  # a streamed text is being printed on the current line

    def __call__(self, event: Event) -> None:
        if isinstance(event, TokenDelta | TokensDiscarded):
            self._streaming(event)
            return
        self._end_line()
        match event:
            case PlanMade(plan=plan):
                _print_plan(self.console, plan)
            case Selected(selections=selections):
                self.console.print("[bold]Selection[/bold] (top candidates, best first)")
                for step, record in selections.items():
                    for rank, c in enumerate(record["candidates"][:3], 1):
                        line = f"  {step} #{rank} {c['card']}: {c['why']}"
                        self.console.print(line, markup=False)
                    for r in record["rejected"]:
                        line = f"  {step} not {r['card']}: {r['reason']}"
                        self.console.print(line, markup=False)
            case StepStarted():
                self.console.print(f"  [cyan]>[/cyan] {event.step} running on {event.card} ...")
            case StepFinished():
                self._finished(event)
            case PullProgress():
                self.console.print(f"  {pull_line(event)}", markup=False)
            case Decided() if event.action != "accept":
                self.console.print(
                    f"  [yellow]router[/yellow] {event.step}: {event.action} - {event.reason}",
                    markup=True,
                )

    def _streaming(self, event: TokenDelta | TokensDiscarded) -> None:
        if isinstance(event, TokensDiscarded):
            if self.streamed.discard(event):
                self._end_line()
                self.console.print(
                    f"  [yellow]discarded[/yellow] the text of {event.step}: "
                    + escape(event.reason)
                )
            return
        if self.streamed.add(event):
            self._end_line()
            self.console.print(f"      {event.step} {event.card} writes: ", end="")
        self.console.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
        self.console.file.flush()
        self.line_open = True

    def _end_line(self) -> None:
        if self.line_open:
            self.console.print()
            self.line_open = False

    def _finished(self, event: StepFinished) -> None:
        shown = self.streamed.text(event.step, event.seq)
        self._end_line()
        took = f"{event.seconds:.2f} s"
        if event.load_seconds:
            took += f" (+{event.load_seconds:.2f} s load)"
        if event.status == "ok":
            self.console.print(
                f"  [green]ok[/green] {event.step} {event.card} {took} {usd(event.usd)}"
            )
            for name, value in (event.outputs or {}).items():
                if shown is not None and value == shown:
                    continue  # printed as it was made
                text = render_value("json", value) if not isinstance(value, str) else value
                self.console.print(f"      {name}: {text[:300]}", markup=False)
        else:
            self.console.print(
                f"  [red]{escape(str(event.status))}[/red] "
                + escape(f"{event.step} {event.card}: {event.error}"),
                highlight=False,
            )


def _print_plan(console: Console, plan: dict[str, Any]) -> None:
    """The subtasks of a plan, and the planner's notes (e.g. that it fell back)."""
    planner = f" (planner: {plan['planner']})" if plan.get("planner") else ""
    console.print(f"[bold]Plan[/bold]{escape(planner)}")
    for s in plan["subtasks"]:
        deps = f" after {', '.join(s['deps'])}" if s["deps"] else ""
        line = f"  {s['id']}: {s['task']} - {_clip(s['instruction'])!r}{deps}"
        console.print(f"{line}  [{_clip(_args_text(s['args']))}]", markup=False)
    for note in plan.get("notes") or []:
        console.print("  [yellow]note[/yellow] " + escape(str(note)), highlight=False)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def print_result(console: Console, result: RunResult, streamed: StreamedText | None = None) -> None:
    """The answer, the files produced, and the cost.

    Text already ``streamed`` while the run went is not printed again: the answer names it.
    """
    console.print()
    colour = "green" if result.ok else "yellow"
    console.print(f"[bold]Answer[/bold] [{colour}]({result.status})[/{colour}]")
    text = result.answer or result.message
    if streamed is not None:
        text = streamed.in_answer(text)
    if not text and result.status == "unfinished":
        text = "No answer yet: the run did not finish. Resume: orchestrator runs resume "
        text += result.run_id
    console.print(text, markup=False)
    if result.artifacts:
        console.print("[bold]Files[/bold]")
        for path in result.artifacts:
            console.print(f"  {path}", markup=False)
    spent = result.spent
    console.print(
        f"[bold]Cost[/bold] {usd(spent['usd'])} | {spent['calls']} calls | "
        f"{spent['tokens']} tokens | {spent['wall_seconds']:.2f} s wall"
    )
    left = {k: v for k, v in result.budget_left.items() if v is not None}
    if left:
        console.print("[bold]Budget left[/bold] " + ", ".join(f"{k} {v}" for k, v in left.items()))


def print_run(console: Console, result: RunResult) -> None:
    """A stored run in full: the plan, each step, the router's decisions, the answer, the cost."""
    console.print(f"[bold]Run {escape(result.run_id)}[/bold] ({escape(result.status)})")
    console.print(f"Request: {_clip(result.request)!r}", markup=False, highlight=False)
    if result.plan is not None:
        _print_plan(console, result.plan.model_dump(mode="json"))
    if result.steps:
        console.print("[bold]Steps[/bold]")
    for step in result.steps:
        line = (
            f"  {step.step} {step.status:<11} {step.card or '-'}  {step.seconds:.2f} s  "
            f"{usd(step.usd)}  {len(step.attempts)} attempt(s)"
        )
        console.print(line, markup=False, highlight=False)
        for name, value in (step.outputs or {}).items():
            text = value if isinstance(value, str) else render_value("json", value)
            console.print(f"      {name}: {_clip(text)}", markup=False, highlight=False)
        last = step.attempts[-1] if step.attempts else None
        if step.status != "done" and last and last.get("error"):
            console.print(f"      error: {_clip(str(last['error']))}", markup=False)
        for attempt in step.attempts:  # each failed call's traceback in the card's own code
            if attempt.get("traceback"):
                console.print(f"      {attempt['card']} failed:", markup=False, highlight=False)
                for row in str(attempt["traceback"]).splitlines():
                    console.print(f"        {row}", markup=False, highlight=False, soft_wrap=True)
    if result.decisions:
        console.print("[bold]Router decisions[/bold]")
    for d in result.decisions:
        on = f" {d['card']}" if d.get("card") else ""
        console.print(
            f"  {d['step']}: {d['action']}{on} - {d['reason']}", markup=False, highlight=False
        )
    print_result(console, result)


def print_cards(console: Console, zoo: Zoo) -> None:
    """One row per card: name, task, IO types, availability."""
    table = Table("name", "task", "in -> out", "backend", "available")
    for entry in sorted(zoo, key=lambda e: (e.card.task, e.card.name)):
        card = entry.card
        io = f"{','.join(i.type for i in card.inputs)} -> {','.join(o.type for o in card.outputs)}"
        status = "yes" if entry.available else f"no: {entry.unavailable}"
        table.add_row(card.name, card.task, io, card.backend.kind, status)
    console.print(table)


def print_card(console: Console, entry: ZooEntry) -> None:
    """Everything a card says, and whether it can run here."""
    card = entry.card
    console.print(f"[bold]{card.name}[/bold] ({card.task}) from {entry.path}")
    console.print(card.description, markup=False)
    status = "available" if entry.available else f"unavailable: {entry.unavailable}"
    console.print(f"status: {status}", markup=False)
    for label, ios in (("inputs", card.inputs), ("outputs", card.outputs)):
        console.print(f"{label}: " + ", ".join(f"{i.name} ({i.type})" for i in ios))
    console.print(f"backend: {card.backend.model_dump(mode='json')}", markup=False)
    console.print(f"cost: {card.cost.model_dump(mode='json')}", markup=False)
    console.print(f"requires: {card.requires.model_dump(mode='json')}", markup=False)
    from orchestrator.execution.sandbox.policy import policy_for_card

    policy = policy_for_card(card)
    network = policy.network if isinstance(policy.network, bool) else ", ".join(policy.network)
    console.print(
        f"permissions: network {network}; read {list(policy.read) or 'models only'}; "
        f"write {list(policy.write) or 'scratch only'}; env {list(policy.env) or 'none'}; "
        f"memory cap {policy.memory_mb} MB",
        markup=False,
    )
    for limitation in card.limitations:
        console.print(f"limitation: {limitation}", markup=False)
    if card.profile:
        console.print(
            f"profile: {len(card.profile.probes)} probes, mean score {card.profile.mean_score:.2f}"
        )


def request_lines(paths: Any, approvals: Any) -> list[str]:
    """For each card in ``paths``: what it asks for, and what of it is not approved."""
    from orchestrator.cards import load_card
    from orchestrator.cards.approvals import card_requests, unapproved
    from orchestrator.cards.zoo import card_files
    from orchestrator.errors import CardError

    lines = []
    for path in card_files(paths):
        try:
            card = load_card(path)
        except (CardError, OSError):
            continue  # reported as a defect
        asked = card_requests(card).describe()
        if not asked:
            lines.append(f"{card.name} asks for nothing beyond the sandbox's defaults")
            continue
        lines.append(f"{card.name} asks for: {', '.join(asked)}")
        requests = card_requests(card)
        missing = unapproved(requests, approvals.for_card(card), withheld=approvals.withheld)
        never = [m.removesuffix(" (never given to a tool)") for m in missing if "never" in m]
        pending = [m for m in missing if "never" not in m]
        if not missing:
            lines.append("  approved" + (" (a built-in card)" if card.builtin else ""))
        if pending:
            lines.append(
                f"  not approved, so it does not run: {', '.join(pending)} - approve it under "
                f"[approve.{card.name}] in orchestrator.toml, or with --approve {card.name}"
            )
        if never:
            lines.append(
                f"  never given to a tool, approved or not: {', '.join(never)} - the card cannot "
                "run as it is"
            )
    return lines
