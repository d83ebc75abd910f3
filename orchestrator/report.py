"""Human-readable reports of runs, progress events and cards (rich), for the CLI and chat."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.answer import render_value
from orchestrator.run import RunResult
from orchestrator.zoo import Zoo, ZooEntry

__all__ = ["EventPrinter", "print_card", "print_cards", "print_result", "usd"]


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


class EventPrinter:
    """Prints progress events as a run goes: the plan, each step's start and end, decisions."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "plan":
            self.console.print("[bold]Plan[/bold]")
            for s in event["plan"]["subtasks"]:
                deps = f" after {', '.join(s['deps'])}" if s["deps"] else ""
                line = f"  {s['id']}: {s['task']} - {s['instruction']!r}{deps}"
                self.console.print(f"{line}  [{_args_text(s['args'])}]", markup=False)
        elif kind == "select":
            self.console.print("[bold]Selection[/bold] (top candidates, best first)")
            for step, record in event["selections"].items():
                for rank, c in enumerate(record["candidates"][:3], 1):
                    self.console.print(f"  {step} #{rank} {c['card']}: {c['why']}", markup=False)
                for r in record["rejected"]:
                    self.console.print(f"  {step} not {r['card']}: {r['reason']}", markup=False)
        elif kind == "step_started":
            self.console.print(f"  [cyan]>[/cyan] {event['step']} running on {event['card']} ...")
        elif kind == "step_finished":
            self._finished(event)
        elif kind == "decision" and event["action"] != "accept":
            self.console.print(
                f"  [yellow]router[/yellow] {event['step']}: {event['action']} - {event['reason']}",
                markup=True,
            )

    def _finished(self, event: dict[str, Any]) -> None:
        took = f"{event['seconds']:.2f} s"
        if event.get("load_seconds"):
            took += f" (+{event['load_seconds']:.2f} s load)"
        if event["status"] == "ok":
            self.console.print(
                f"  [green]ok[/green] {event['step']} {event['card']} {took} {usd(event['usd'])}"
            )
            for name, value in event.get("outputs", {}).items():
                text = render_value("json", value) if not isinstance(value, str) else value
                self.console.print(f"      {name}: {text[:300]}", markup=False)
        else:
            self.console.print(
                f"  [red]{event['status']}[/red] {event['step']} {event['card']}: {event['error']}",
                markup=False,
            )


def print_result(console: Console, result: RunResult) -> None:
    """The answer, the files produced, and the cost."""
    console.print()
    colour = "green" if result.ok else "yellow"
    console.print(f"[bold]Answer[/bold] [{colour}]({result.status})[/{colour}]")
    console.print(result.answer or result.message, markup=False)
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
    from orchestrator.sandbox.policy import policy_for_card

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
