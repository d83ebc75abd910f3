"""One check for any planner's plan: every given input read, every step fed the type it reads.

``checked_plan`` runs after whichever planner made the plan (the graph's plan node calls it):

* a step given an input of a type no card of its task reads (an image to a text classifier,
  a step's audio output to a text input) gets the converting step(s) inserted before it, chosen
  from the zoo's cards by type and by how well they fit the step's instruction;
* a plan that still leaves a given file unread, or feeds a step a type nothing can convert, is
  replaced by the embedded planner's plan, and the notes say why.

A plan that is already sound comes back unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator.cards.zoo import Zoo
from orchestrator.plan import Arg, FileArg, Plan, RefArg, Subtask

__all__ = ["checked_plan", "plan_problems"]


def _reads(zoo: Zoo, task: str) -> set[str]:
    """The input types the runnable cards of ``task`` read (all of them when none runs)."""
    entries = zoo.for_task(task)
    runnable = [e for e in entries if e.available] or entries
    return {io.type for e in runnable for io in e.card.inputs}


def _makes(zoo: Zoo, task: str) -> set[str]:
    out = {t for e in zoo.for_task(task) for t in e.card.output_types()}
    return out | ({"text"} if out & {"text", "json"} else set())


def _arg_type(plan: Plan, zoo: Zoo, io_type: str, arg: Arg) -> str:
    """The type an argument really carries (a file by its extension, a ref by its producer)."""
    from orchestrator.planning.embedded import file_type

    if isinstance(arg, FileArg):
        return file_type(arg.path) or io_type
    if isinstance(arg, RefArg):
        try:
            made = _makes(zoo, plan.get(arg.step).task)
        except KeyError:
            return io_type
        return io_type if io_type in made or not made else sorted(made)[0]
    return "text"


def plan_problems(plan: Plan, zoo: Zoo, files: Sequence[Path], request: str) -> list[str]:
    """What is wrong with ``plan`` by type and coverage ([] when nothing is)."""
    from orchestrator.planning.embedded import mentioned_files

    problems = []
    for subtask in plan.subtasks:
        reads = _reads(zoo, subtask.task)
        for io_type, arg in subtask.args.items():
            carried = _arg_type(plan, zoo, io_type, arg)
            if reads and carried not in reads:
                problems.append(
                    f"step {subtask.id} ({subtask.task}) is given {carried} as its {io_type} "
                    f"input; its cards read {', '.join(sorted(reads))}"
                )
    read = {Path(a.path).name for s in plan.subtasks for a in s.args.values()
            if isinstance(a, FileArg)}  # fmt: skip
    said = " ".join(plan.unserved)
    for name in [*mentioned_files(request), *(str(f) for f in files)]:
        if Path(name).name not in read and Path(name).name not in said:
            problems.append(f"{Path(name).name} was given but no step reads it")
    return problems


def _bridged(plan: Plan, zoo: Zoo) -> Plan | None:
    """``plan`` with converting steps inserted where a step is fed the wrong type, or None."""
    from orchestrator.planning.zoo_plan import ZooPlanner

    finder = ZooPlanner(zoo)
    subtasks: list[Subtask] = []
    taken = {s.id for s in plan.subtasks}
    for subtask in plan.subtasks:
        reads = _reads(zoo, subtask.task)
        args = dict(subtask.args)
        deps = list(subtask.deps)
        for io_type, arg in subtask.args.items():
            carried = _arg_type(plan, zoo, io_type, arg)
            if not reads or carried in reads:
                continue
            wanted = "text" if "text" in reads else sorted(reads)[0]
            path = finder.bridge_path(subtask.instruction, carried, wanted)
            if path is None:
                return None
            current: Arg = arg
            for index in path:
                card = finder.entries[index].card
                new_id = _fresh_id(taken, f"{subtask.id}b")
                subtasks.append(
                    Subtask(
                        id=new_id,
                        task=card.task,
                        instruction=f"{card.description.split('.')[0]} (for step {subtask.id})",
                        deps=[current.step] if isinstance(current, RefArg) else [],
                        args={carried: current},
                    )
                )
                current, carried = RefArg(step=new_id), card.primary_output().type
            del args[io_type]
            args[wanted] = current
            deps.append(current.step)  # type: ignore[union-attr]
        subtasks.append(subtask.model_copy(update={"args": args, "deps": sorted(set(deps))}))
    return plan.model_copy(update={"subtasks": subtasks})


def _fresh_id(taken: set[str], stem: str) -> str:
    n = 1
    while f"{stem}{n}" in taken:
        n += 1
    taken.add(f"{stem}{n}")
    return f"{stem}{n}"


def checked_plan(
    plan: Plan, zoo: Zoo, files: Sequence[Path], replacement: Callable[[], Plan]
) -> Plan:
    """``plan`` if sound; else repaired by type; else ``replacement()`` (the notes say why)."""
    problems = plan_problems(plan, zoo, files, plan.request)
    if not problems:
        return plan
    repaired = _bridged(plan, zoo)
    if repaired is not None and not plan_problems(repaired, zoo, files, plan.request):
        notes = [*plan.notes, f"repaired: {'; '.join(problems)}"]
        return repaired.model_copy(update={"notes": notes})
    fallback = replacement()
    notes = [*fallback.notes, f"replaced the {plan.planner or 'given'} plan: {'; '.join(problems)}"]
    return fallback.model_copy(update={"notes": notes})
