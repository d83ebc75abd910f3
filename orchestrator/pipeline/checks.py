"""Checks made before a run starts: the configured planner and router, the prompt, the folder.

Each mistake is the user's, so each raises a :class:`~orchestrator.errors.UserError` (or a
``TypeError`` for a prompt that is not a string at all) saying what to fix; nothing is stored.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from orchestrator.config import Config, env_planner, env_router
from orchestrator.errors import ConfigError, UserError

__all__ = [
    "checked_files",
    "checked_prompt",
    "configured_executor",
    "configured_planner",
    "configured_policy",
    "configured_scorer",
    "prepare_run_dir",
    "short",
]

ECHO_CHARS = 200  # at most this much of a prompt is quoted back in any message


def short(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def configured_planner(config: Config) -> Any:
    """The planner the config names; an unknown name is a :class:`ConfigError`."""
    from orchestrator.errors import UnknownPlanner
    from orchestrator.planning import planner_from_config, planner_names

    try:
        return planner_from_config(config)
    except UnknownPlanner:
        known = ["auto", *planner_names()]
        source = "$ORCHESTRATOR_PLANNER" if env_planner() else "planner"
        raise ConfigError(
            f"{source}: unknown planner '{config.planner}'{_hint(config.planner, known)}; "
            f"known planners: {', '.join(known)}"
        ) from None


def configured_scorer(config: Config) -> Any:
    """The selection scorer the config's ``scorer`` names; an unknown name is a ConfigError."""
    from orchestrator.errors import UnknownScorer
    from orchestrator.selection import SCORERS, scorer_from_config

    try:
        return scorer_from_config(config)
    except UnknownScorer:
        raise _unknown("scorer", config.scorer, SCORERS.names()) from None


def configured_executor(config: Config) -> Any:
    """The executor the config's ``executor`` names; an unknown name is a ConfigError."""
    from orchestrator.errors import UnknownExecutor
    from orchestrator.execution import EXECUTORS, executor_from_config

    try:
        return executor_from_config(config)
    except UnknownExecutor:
        raise _unknown("executor", config.executor, EXECUTORS.names()) from None


def _unknown(field: str, name: str, known: list[str]) -> ConfigError:
    return ConfigError(
        f"{field}: unknown {field} '{name}'{_hint(name, known)}; known: {', '.join(known)} "
        f"(a package adds one through the 'orchestrator.{field}s' entry point group)"
    )


def configured_policy(config: Config) -> Any:
    """The router policy the config names, its options checked before any run starts.

    ``$ORCHESTRATOR_ROUTER`` if set, else the config's ``router`` (``default`` unless changed).
    """
    from orchestrator.routing.policy import POLICIES, get_policy, policy_class

    from_env = bool(env_router())
    name = str(env_router() or config.router)
    source = "$ORCHESTRATOR_ROUTER" if from_env else "router"
    if name not in POLICIES:
        known = POLICIES.names()
        raise ConfigError(
            f"{source}: unknown router policy '{name}'{_hint(name, known)}; "
            f"known policies: {', '.join(known)}"
        )
    options = _checked_options(name, policy_class(name), dict(config.router_options))
    return get_policy(name, **options)


def _checked_options(name: str, policy: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Options named and typed as the policy's fields; a wrong one names what is accepted."""
    if not dataclasses.is_dataclass(policy):
        return options  # a policy that is not a dataclass checks its own options
    fields = {f.name: f for f in dataclasses.fields(policy) if f.init and f.name != "name"}
    try:
        hints = typing.get_type_hints(policy)
    except Exception:  # noqa: BLE001 - an unresolvable annotation is simply not checked
        hints = {}
    checked = {}
    for key, value in options.items():
        if key not in fields:
            raise ConfigError(
                f"router_options: unknown option '{key}' of router policy '{name}'"
                f"{_hint(key, list(fields))}; accepted: {', '.join(sorted(fields))}"
            )
        checked[key] = _typed(name, key, value, hints.get(key))
    return checked


_SIMPLE = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _typed(policy: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` names (simple types only; others pass unchanged)."""
    allowed = [hint]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        allowed = list(typing.get_args(hint))
    if value is None and type(None) in allowed:
        return value
    simple = [a for a in allowed if a in _SIMPLE or a is Decimal]
    if not simple or len(simple) != len([a for a in allowed if a is not type(None)]):
        return value
    for kind in simple:
        converted = _convert(kind, value)
        if converted is not None:
            return converted
    wanted = " or ".join("an amount like 0.05" if k is Decimal else _SIMPLE[k] for k in simple)
    raise ConfigError(
        f"router_options.{key} of router policy '{policy}' must be {wanted}, got {value!r}"
    )


def _convert(kind: Any, value: Any) -> Any:
    if isinstance(value, bool):
        return value if kind is bool else None
    if kind is float and isinstance(value, int | float):
        return float(value)
    if kind is int and isinstance(value, int):
        return value
    if kind is str and isinstance(value, str):
        return value
    if kind is Decimal and isinstance(value, int | float | str | Decimal):
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            return None
        return amount if amount.is_finite() else None
    return None


def checked_prompt(prompt: object, limit: int) -> str | None:
    """The reason a prompt is refused (``None`` if it is fine); a non-string is a TypeError."""
    if not isinstance(prompt, str):
        raise TypeError(f"the prompt must be a string, got {type(prompt).__name__}")
    if len(prompt) > limit:
        return (
            f"the request is {len(prompt):,} characters long; the limit is {limit:,} "
            f"(max_prompt_chars in the config). Shorten it, or attach the text as a .txt file. "
            f"It starts: {prompt[:ECHO_CHARS]!r}..."
        )
    return None


def checked_files(files: Sequence[str | Path]) -> str | None:
    """The reason attached ``files`` are refused (``None`` if each is a readable file).

    Audio and image files are inputs of the steps that need them; a text file (.txt, .md) is
    read as the text input of the step that needs one.
    """
    from orchestrator.file_kinds import content_problem
    from orchestrator.pipeline.step import text_file_problem
    from orchestrator.planning.embedded import FILE_TYPES, file_type

    for name in files:
        path = Path(name)
        if path.is_dir():
            return f"attached {path} is a folder; attach the files in it one by one"
        if not path.is_file():
            return f"attached file {path} does not exist; check the path"
        kind = file_type(str(path))
        if kind is None:
            kinds = "; ".join(f"{t}: {', '.join(exts)}" for t, exts in FILE_TYPES.items())
            return f"attached {path.name} is not a file type any step reads ({kinds})"
        problem = content_problem(path, kind)
        if problem is not None:
            return f"attached {problem}"
        problem = text_file_problem(path) if kind == "text" else None
        if problem is not None:
            return f"attached {problem}"
    return None


def prepare_run_dir(path: Path, *, chosen: bool) -> Path:
    """Create the run's output folder; a path that cannot be one is the user's mistake.

    ``chosen``: the caller named it (``--out``), else it is under the configured runs folder.
    """
    fix = (
        "pass --out a folder you can write to"
        if chosen
        else "set runs_dir (or $ORCHESTRATOR_RUNS_DIR) to a folder you can write to"
    )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise UserError(
            f"cannot use {path} as the output folder: it (or a folder above it) is a file; {fix}"
        ) from exc
    except OSError as exc:
        raise UserError(
            f"cannot create the output folder {path}: {(exc.strerror or str(exc)).lower()}; {fix}"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to the output folder {path}; {fix}")
    return path
