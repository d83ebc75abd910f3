"""Checking a plan before it runs: its ids, references, order, task types and input files."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cards.zoo import Zoo
from orchestrator.errors import PlanError
from orchestrator.plan import FileArg, Plan

__all__ = ["validate_plan"]


def _check_ids(plan: Plan) -> None:
    ids = [s.id for s in plan.subtasks]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise PlanError(f"step ids must be unique; repeated: {', '.join(repeated)}")
    known = set(ids)
    for subtask in plan.subtasks:
        for dep in subtask.deps:
            if dep not in known:
                raise PlanError(f"step {subtask.id} depends on unknown step '{dep}'")
        for ref in subtask.referenced_steps():
            if ref not in known:
                raise PlanError(f"step {subtask.id} references the output of unknown step '{ref}'")
            if ref not in subtask.deps:
                raise PlanError(
                    f"step {subtask.id} reads the output of step {ref} but does not list it in "
                    "deps; add it to deps"
                )


def validate_plan(
    plan: Plan, zoo: Zoo, *, base_dir: Path | None = None, check_files: bool = True
) -> None:
    """Check ids, references, acyclicity, task types and (unless told not to) input files.

    Raise PlanError saying what is wrong.
    """
    _check_ids(plan)
    plan.topological_order()
    tasks = zoo.tasks()
    for subtask in plan.subtasks:
        if subtask.task not in tasks:
            raise PlanError(
                f"step {subtask.id}: unknown task '{subtask.task}'; the zoo has cards for: "
                f"{', '.join(sorted(tasks))}"
            )
        for io_type, arg in subtask.args.items():
            if isinstance(arg, FileArg) and check_files:
                path = Path(arg.path)
                if base_dir is not None and not path.is_absolute():
                    path = base_dir / path
                if not path.is_file():
                    raise PlanError(
                        f"step {subtask.id}: {io_type} file '{arg.path}' not found"
                        + _did_you_mean(path)
                    )
                from orchestrator.file_kinds import content_problem

                problem = content_problem(path, io_type)
                if problem is not None:
                    raise PlanError(f"step {subtask.id}: {problem}")


def _did_you_mean(path: Path) -> str:
    """A file beside ``path`` whose name differs only in case ("MEMO.WAV": memo.wav)."""
    try:
        near = sorted(
            f.name
            for f in path.parent.iterdir()
            if f.name.lower() == path.name.lower() and f.is_file()
        )
    except OSError:
        return ""
    return f"; did you mean {near[0]}? (file names are case-sensitive)" if near else ""
