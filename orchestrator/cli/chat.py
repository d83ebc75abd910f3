"""``orchestrator chat``: a conversation in the terminal with the plan, models and money in view.

Each turn prints the plan, then keeps one live line per subtask (model, status, seconds, cost)
while the run goes, with the text a model is writing under it as it comes (token streaming),
then the answer (a text already shown is not repeated), the files produced and the budget left.
Ctrl-C during a turn cancels that run (a step already running finishes and is kept) and the
conversation goes on; Ctrl-D at the prompt, or ``/quit``, leaves.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.cli.options import ApproveOption, CardsOption
from orchestrator.cli.report import StreamedText, print_cards, pull_line, usd
from orchestrator.errors import UserError
from orchestrator.events import (
    Answered,
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

__all__ = ["chat_command", "ChatScreen", "StepLine"]

HELP = (
    "Type a request, or a command:\n"
    "  /attach FILE   attach a file to the next request\n"
    "  /budget        what this conversation has spent and may still spend\n"
    "  /cards         the models (tool cards) and whether they can run here\n"
    "  /trace         how the last turn chose its models, and the router's decisions\n"
    "  /help          this text\n"
    "  /quit          leave (Ctrl-D too)\n"
    "Ctrl-C while a request runs cancels it; the conversation goes on."
)


@dataclass
class StepLine:
    """What the live display knows of one subtask."""

    step: str
    task: str
    card: str = "-"
    status: str = "waiting"
    started: float | None = None
    seconds: float = 0.0
    usd: Decimal = Decimal(0)
    note: str = ""


@dataclass
class ChatScreen:
    """Turns one run's progress events into the live table (events may come from any thread)."""

    console: Console
    steps: dict[str, StepLine] = field(default_factory=dict)
    state: str = "planning"
    lock: threading.Lock = field(default_factory=threading.Lock)
    streamed: StreamedText = field(default_factory=StreamedText)

    def __call__(self, event: Event) -> None:
        with self.lock:
            match event:
                case TokenDelta():
                    self.streamed.add(event)
                case TokensDiscarded() if self.streamed.discard(event):
                    self.console.print(
                        f"  discarded the text of {event.step}: {event.reason}",
                        style="yellow",
                        markup=False,
                    )
                case PlanMade(plan=plan):
                    self._plan(plan)
                case Selected(selections=selections):
                    for step, record in selections.items():
                        if record.get("candidates") and step in self.steps:
                            self.steps[step].card = record["candidates"][0]["card"]
                    self.state = "running"
                case StepStarted() | StepFinished() | PullProgress():
                    self._step(event)
                case Decided() if event.action != "accept":
                    self.console.print(
                        f"  router {event.step}: {event.action} - {event.reason}",
                        style="yellow",
                        markup=False,
                    )
                case Answered():
                    self.state = "answering"

    def _step(self, event: StepStarted | StepFinished | PullProgress) -> None:
        match event:
            case StepStarted() if event.step in self.steps:
                line = self.steps[event.step]
                line.card, line.status, line.started = event.card, "running", time.monotonic()
            case StepFinished() if event.step in self.steps:
                line = self.steps[event.step]
                line.card, line.status = event.card, event.status
                line.seconds += event.seconds + event.load_seconds
                line.usd += Decimal(event.usd)
                line.note = (event.error or "")[:80]
                line.started = None
            case PullProgress():
                for line in self.steps.values():
                    if line.card == event.card and line.status == "running":
                        line.note = pull_line(event)

    def _plan(self, plan: dict[str, Any]) -> None:
        table = Table("step", "task", "instruction", "after", title="Plan", title_justify="left")
        for s in plan["subtasks"]:
            self.steps[s["id"]] = StepLine(s["id"], s["task"])
            table.add_row(s["id"], s["task"], s["instruction"][:60], ", ".join(s["deps"]) or "-")
        self.console.print(table)

    def render(self) -> Group:
        """The live table, one line per subtask, and the text being streamed under it."""
        table = Table("step", "model", "status", "seconds", "cost", box=None, pad_edge=False)
        with self.lock:
            for line in self.steps.values():
                seconds = line.seconds
                if line.started is not None:
                    seconds += time.monotonic() - line.started
                style = {"ok": "green", "running": "cyan", "waiting": "dim"}.get(line.status, "red")
                status = Text(line.status + (f" ({line.note})" if line.note else ""), style=style)
                table.add_row(line.step, line.card, status, f"{seconds:.1f}", usd(line.usd))
            if not self.steps:
                table.add_row("-", "-", Text(self.state, style="cyan"), "", "")
            texts = ["".join(pieces) for pieces in self.streamed.parts.values()]
        return Group(table, *(Text(text) for text in texts))


def _show_result(
    console: Console, session: Any, result: Any, streamed: StreamedText | None = None
) -> None:
    colour = {"ok": "green", "cancelled": "yellow"}.get(result.status, "yellow")
    console.print(Text("Answer ", style="bold") + Text(f"({result.status})", style=colour))
    text = result.answer or result.message
    console.print(streamed.in_answer(text) if streamed else text, markup=False)
    if result.artifacts:
        console.print(Text("Files", style="bold"))
        for path in result.artifacts:
            console.print(f"  {path}", markup=False)
    console.print(
        f"Cost of this turn {usd(result.spent['usd'])}, {result.spent['calls']} calls, "
        f"{result.spent['wall_seconds']:.1f} s | {_budget_line(session)}",
        markup=False,
    )


def _budget_line(session: Any) -> str:
    left = session.budget_left()
    parts = [f"spent {usd(session.spent_usd)}"]
    parts.append(f"left {usd(left.usd)}" if left.usd is not None else "no money limit")
    if left.calls is not None:
        parts.append(f"{left.calls} calls left")
    if left.tokens is not None:
        parts.append(f"{left.tokens} tokens left")
    return "Budget: " + ", ".join(parts)


def _trace(console: Console, session: Any) -> None:
    if not session.results:
        console.print("No turn yet.")
        return
    result = session.results[-1]
    console.print(f"Run {result.run_id}: {result.request!r}", markup=False)
    for step in result.steps:
        console.print(f"  {step.step} {step.task}: {step.status} on {step.card}", markup=False)
        for rank, c in enumerate(step.candidates[:3], 1):
            console.print(f"    #{rank} {c['card']}: {c['why']}", markup=False)
        for r in step.rejected:
            console.print(f"    not {r['card']}: {r['reason']}", markup=False)
    for d in result.decisions:
        console.print(f"  router {d['step']}: {d['action']} - {d['reason']}", markup=False)


def _run_turn(console: Console, session: Any, text: str) -> None:
    screen = ChatScreen(console)
    cancel = threading.Event()
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["result"] = session.send(text, on_event=screen, cancel=cancel)
        except UserError as exc:
            outcome["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown to the person, the session goes on
            outcome["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            done.set()

    worker = threading.Thread(target=work, name="chat-turn", daemon=True)
    with Live(get_renderable=screen.render, console=console, refresh_per_second=8) as live:
        worker.start()
        # Not Thread.join: a Ctrl-C that interrupts join() can make is_alive() lie (CPython).
        while not done.is_set():
            try:
                done.wait(0.1)
            except KeyboardInterrupt:
                if not cancel.is_set():
                    cancel.set()
                    live.console.print(
                        "Cancelling: a step that is running finishes first "
                        "(Ctrl-C again stops it).",
                        style="yellow",
                    )
                    continue
                stop = getattr(session.orchestrator.executor, "stop_running", None)
                if stop is not None:
                    live.console.print("Stopping the running steps now.", style="yellow")
                    stop()
        live.refresh()
    if "error" in outcome:
        console.print(f"error: {outcome['error']}", style="red", markup=False)
    else:
        _show_result(console, session, outcome["result"], screen.streamed)


def _command(console: Console, session: Any, line: str) -> bool:
    """Run a slash command; False means leave."""
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    if name in ("/quit", "/exit"):
        return False
    if name == "/help":
        console.print(HELP, markup=False)
    elif name == "/budget":
        console.print(_budget_line(session), markup=False)
        limits = {k: v for k, v in session.budget.as_dict().items() if v is not None}
        console.print(f"Limits: {limits or 'none'} (seconds are per turn)", markup=False)
    elif name == "/cards":
        print_cards(console, session.orchestrator.zoo)
    elif name == "/trace":
        _trace(console, session)
    elif name == "/attach":
        if not arg:
            console.print("usage: /attach FILE", style="red")
        else:
            try:
                path = session.attach(arg)
                console.print(f"Attached {path} to the next request.", markup=False)
            except UserError as exc:
                console.print(f"error: {exc}", style="red", markup=False)
    else:
        console.print(f"unknown command {name}; /help lists them", style="red", markup=False)
    return True


def _own_unavailable(zoo: Any) -> list[Any]:
    """The user's cards (not the built-in ones) that cannot run here: said at start-up."""
    from orchestrator.cards.zoo import builtin_cards_dir

    builtin = builtin_cards_dir().resolve()
    return [
        e
        for e in zoo
        if not e.available and e.path is not None and not e.path.resolve().is_relative_to(builtin)
    ]


def chat_loop(console: Console, session: Any) -> None:
    """Read requests and commands until the person leaves."""
    try:
        # GNU readline reads the line itself: no 4095-byte cap of the terminal's line mode on a
        # long paste, and arrow keys, history and line editing work.
        import readline  # noqa: F401
    except ImportError:  # pragma: no cover - Python built without readline
        pass
    console.print(
        f"Orchestrator chat: {sum(1 for e in session.orchestrator.zoo if e.available)} models "
        f"ready. {_budget_line(session)}. /help for commands.",
        markup=False,
    )
    for entry in _own_unavailable(session.orchestrator.zoo):
        console.print(
            f"Your card {entry.card.name} ({entry.path}) cannot run here: {entry.unavailable}",
            style="yellow",
            markup=False,
        )
    while True:
        try:
            line = console.input("[bold]you>[/bold] ").strip()
        except EOFError:
            console.print()
            break
        except KeyboardInterrupt:
            console.print("\n(/quit or Ctrl-D leaves)")
            continue
        if not line:
            continue
        if line.startswith("/"):
            if not _command(console, session, line):
                break
            continue
        _run_turn(console, session, line)
    console.print(f"Bye. {_budget_line(session)}", markup=False)


def chat_command(
    budget_usd: Annotated[
        str | None, typer.Option(help="money limit for the whole conversation, US dollars")
    ] = None,
    max_seconds: Annotated[float | None, typer.Option(help="wall-clock limit per turn")] = None,
    max_calls: Annotated[int | None, typer.Option(help="limit on model calls, all turns")] = None,
    cards: CardsOption = None,
    approve: ApproveOption = None,
) -> None:
    """Talk to the orchestrator: follow-ups can refer to earlier results and files."""
    from orchestrator.cli.main import _budget, _config, _fail, _zoo
    from orchestrator.pipeline.chat import ChatSession
    from orchestrator.pipeline.orchestrator import Orchestrator

    # Lines print unwrapped (the terminal wraps them): an answer or budget line copied from the
    # screen stays whole whatever the width.
    console = Console(soft_wrap=True)
    config = _config(cards, approve)
    budget = _budget(budget_usd, max_seconds, max_calls, None, config)
    try:
        orchestrator = Orchestrator(config, zoo=_zoo(config))
    except UserError as exc:  # a bad planner, router or option in the configuration
        raise _fail(str(exc)) from exc
    with orchestrator:
        chat_loop(console, ChatSession(orchestrator, budget))
