"""The zoo: every tool card known, loaded from folders and checked for availability."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.cards import ToolCard, builtin_cards_dir, load_card
from orchestrator.cards.approvals import Approvals
from orchestrator.cards.backend import unavailable_reason
from orchestrator.cards.probes.aptitude import PROBES_SUFFIX
from orchestrator.cards.profile import attach_profile
from orchestrator.errors import CardDefect, CardError, UserError

__all__ = [
    "Zoo",
    "ZooEntry",
    "builtin_cards_dir",
    "card_code_dirs",
    "card_files",
    "code_clashes",
    "missing_read_paths",
    "validate_paths",
]


@dataclass
class ZooEntry:
    """A card, the file it came from, and why it cannot run here (None when it can)."""

    card: ToolCard
    path: Path | None
    unavailable: str | None = None

    @property
    def available(self) -> bool:
        return self.unavailable is None


def card_files(paths: Iterable[Path]) -> list[Path]:
    """The card files in ``paths``, each once (a folder given twice is read once)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.suffix in (".yaml", ".yml") and not p.name.endswith(PROBES_SUFFIX)
                )
            )
        else:
            files.append(path)
    seen: set[Path] = set()
    unique = []
    for file in files:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(file)
    return unique


def _load_all(files: list[Path]) -> tuple[list[tuple[ToolCard, Path]], list[CardDefect]]:
    loaded: list[tuple[ToolCard, Path]] = []
    defects: list[CardDefect] = []
    first_seen: dict[str, Path] = {}
    for path in files:
        if not path.exists():
            defects.append(CardDefect(path, "<file>", "no such file or folder"))
            continue
        try:
            card = attach_profile(load_card(path), path)
        except CardError as exc:
            defects.extend(exc.defects)
            continue
        if card.name in first_seen:
            defects.append(
                CardDefect(
                    path,
                    "name",
                    f"duplicate name '{card.name}' (also in {first_seen[card.name]}); rename one",
                )
            )
            continue
        first_seen[card.name] = path
        loaded.append((card, path))
    return loaded, defects


def card_code_dirs(paths: Iterable[Path]) -> list[str]:
    """The card folders that hold Python modules: a python card's entry may live beside it.

    Each is bound read-only into the workers of its own cards only, at the end of their import
    path (:attr:`~orchestrator.cards.ToolCard.code_folder`); never onto this process's path.
    """
    folders = [Path(p) if Path(p).is_dir() else Path(p).parent for p in paths]
    resolved = dict.fromkeys(f.resolve() for f in folders)
    return [str(f) for f in resolved if any(f.glob("*.py")) or _modules_in(f)]


# Names a card's module must not take: it would be hidden by this code.
_PROJECT_PACKAGES = frozenset({"orchestrator"})


def _modules_in(folder: Path) -> dict[str, Path]:
    """The top-level modules a folder on sys.path provides (modules and packages), by name."""
    found = {p.stem: p for p in folder.glob("*.py") if p.stem != "__init__"}
    found.update({p.name: p for p in folder.iterdir() if (p / "__init__.py").is_file()})
    return dict(sorted(found.items()))


def _installed_elsewhere(name: str, folder: Path) -> bool:
    """Whether ``name`` is importable from the interpreter's own path (found, never run)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    origin = spec.origin if spec is not None else None
    return spec is not None and not (origin and Path(origin).resolve().is_relative_to(folder))


def code_clashes(paths: Iterable[Path]) -> list[CardDefect]:
    """Modules in card folders named like a module of Python, of this project or installed.

    A worker imports the standard library and installed packages before its card's folder, so
    such a module is never the one a card entry gets; the author is told to rename it.
    """
    defects: list[CardDefect] = []
    for folder in card_code_dirs(paths):
        for name, file in _modules_in(Path(folder)).items():
            if name in sys.stdlib_module_names or name in _PROJECT_PACKAGES:
                what = "a module of Python or of this project"
            elif _installed_elsewhere(name, Path(folder)):
                what = "an installed module"
            else:
                continue
            defects.append(
                CardDefect(
                    file,
                    "python module",
                    f"module '{name}' in {folder} has the name of {what}, which a worker "
                    "imports instead (a card's folder comes last on its import path); rename it",
                )
            )
    return defects


EntryCheck = Callable[[list[tuple[ToolCard, Path]], list[str]], list[CardDefect]]
"""Checks python cards' entries: (cards with their paths, code folders) -> defects."""


def validate_paths(
    paths: Iterable[Path], *, builtin: bool = False, check_entries: EntryCheck | None = None
) -> list[CardDefect]:
    """Every defect of the cards in ``paths`` (files or folders).

    Duplicate names (with the built-in cards too when ``builtin``), clashing Python modules,
    folders without cards, missing ``permissions.read`` paths and, when there are none of those
    and ``check_entries`` is given, what it finds: python entries that do not import (checked in
    the sandbox by :func:`orchestrator.execution.sandbox.entry_check.entry_defects`).
    """
    paths = [Path(p) for p in paths]
    mine = {f.resolve() for f in card_files(paths)}
    roots = ([builtin_cards_dir()] if builtin else []) + paths
    loaded, defects = _load_all(card_files(roots))
    existing = [p for p in paths if p.exists()]
    defects += code_clashes(existing)
    defects += [
        CardDefect(p, "<folder>", f"no cards in {p} (card files end in .yaml or .yml)")
        for p in existing
        if p.is_dir() and not card_files([p])
    ]
    own = [(card, path) for card, path in loaded if path.resolve() in mine]
    for card, path in own:
        defects += probe_defects(card, path)
        missing = missing_read_paths(card)
        if missing:
            defects.append(
                CardDefect(
                    path,
                    "permissions.read",
                    f"no such file or folder: {', '.join(missing)}; create it or fix the path",
                )
            )
    if check_entries is not None and not defects:
        defects += check_entries(own, card_code_dirs(existing))
    return defects


def probe_defects(card: ToolCard, path: Path) -> list[CardDefect]:
    """What is wrong with the probes a card ships beside it (``<card>.probes.yaml``), if any."""
    from orchestrator.cards.probes.aptitude import own_probes_path, probes_for

    probes = own_probes_path(path)
    if not probes.is_file():
        return []
    try:
        probes_for(card, path)
    except UserError as exc:
        message = str(exc).removeprefix(f"{probes}: ")
        return [CardDefect(probes, "probes", message)]
    return []


def missing_read_paths(card: ToolCard) -> list[str]:
    """The card's ``permissions.read`` paths that do not exist here (as the sandbox sees them)."""
    paths = (os.path.abspath(os.path.expanduser(p)) for p in card.permissions.read)
    return [p for p in paths if not os.path.exists(p)]


@dataclass
class Zoo:
    """A set of tool cards with their availability on this machine.

    A card is available when its backend can run here and everything it asks for (network,
    paths, variables) is approved (``approvals``; none by default, the built-in cards' requests
    always). Nothing of a card is imported here: python entries are found as files.
    """

    entries: dict[str, ZooEntry] = field(default_factory=dict)
    _by_task: dict[str, list[ZooEntry]] = field(default_factory=dict, repr=False)
    approvals: Approvals = field(default_factory=Approvals, repr=False)

    @classmethod
    def load(
        cls,
        folders: Iterable[Path] = (),
        *,
        builtin: bool = True,
        approvals: Approvals | None = None,
    ) -> Zoo:
        """Load the built-in cards and those in ``folders``; any broken card raises CardError."""
        folders = [Path(f) for f in folders]
        roots = ([builtin_cards_dir()] if builtin else []) + folders
        loaded, defects = _load_all(card_files(roots))
        defects += code_clashes(f for f in folders if f.exists())
        if defects:
            raise CardError(defects)
        return cls.from_cards((card for card, _ in loaded), approvals).with_paths(loaded)

    @classmethod
    def from_cards(cls, cards: Iterable[ToolCard], approvals: Approvals | None = None) -> Zoo:
        """A zoo of in-memory cards (availability checked now)."""
        zoo = cls(approvals=approvals or Approvals())
        for card in cards:
            zoo.add(card)
        return zoo

    def approve(self, approvals: Approvals) -> None:
        """Check every card against ``approvals`` (instead of the ones it was loaded with)."""
        self.approvals = approvals
        for entry in self:
            entry.unavailable = self._unavailable(entry.card)

    def with_paths(self, loaded: list[tuple[ToolCard, Path]]) -> Zoo:
        for card, path in loaded:
            self.entries[card.name].path = path
        return self

    def add(self, card: ToolCard, path: Path | None = None) -> None:
        """Add one card; a name already in the zoo raises CardError."""
        if card.name in self.entries:
            raise CardError([CardDefect(path, "name", f"duplicate name '{card.name}'")])
        self.entries[card.name] = ZooEntry(card, path, self._unavailable(card))
        self._by_task.setdefault(card.task, []).append(self.entries[card.name])

    def _unavailable(self, card: ToolCard) -> str | None:
        reason = unavailable_reason(card)
        missing = missing_read_paths(card)
        if reason is None and missing:
            reason = f"permissions.read names what does not exist here: {', '.join(missing)}"
        return reason or self.approvals.problem(card)

    def __iter__(self) -> Iterator[ZooEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def get(self, name: str) -> ZooEntry:
        """The entry called ``name``; an unknown name raises KeyError listing the known ones."""
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(sorted(self.entries))
            raise KeyError(f"no card named '{name}'; known cards: {known}") from None

    def tasks(self) -> set[str]:
        """Every task type some card in the zoo does (available or not)."""
        return {entry.card.task for entry in self}

    def for_task(self, task: str) -> list[ZooEntry]:
        if sum(map(len, self._by_task.values())) == len(self.entries):  # no direct edits
            return list(self._by_task.get(task, []))
        return [entry for entry in self if entry.card.task == task]
