"""The zoo: every tool card known, loaded from folders and checked for availability."""

from __future__ import annotations

import importlib.resources
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.backends import unavailable_reason
from orchestrator.cards import ToolCard, load_card
from orchestrator.errors import CardDefect, CardError
from orchestrator.profile import attach_profile

__all__ = ["Zoo", "ZooEntry", "builtin_cards_dir", "card_code_dirs", "validate_paths"]


def builtin_cards_dir() -> Path:
    """The folder of the cards that ship with the project."""
    return Path(str(importlib.resources.files("tool_cards")))


@dataclass
class ZooEntry:
    """A card, the file it came from, and why it cannot run here (None when it can)."""

    card: ToolCard
    path: Path | None
    unavailable: str | None = None

    @property
    def available(self) -> bool:
        return self.unavailable is None


def _card_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


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

    They are importable in this process (for the availability check) and, read-only, in the
    sandboxed workers.
    """
    folders = [Path(p) if Path(p).is_dir() else Path(p).parent for p in paths]
    return [str(f.resolve()) for f in dict.fromkeys(folders) if any(f.glob("*.py"))]


def validate_paths(paths: Iterable[Path]) -> list[CardDefect]:
    """Every defect of the cards in ``paths`` (files or folders), duplicates included."""
    _, defects = _load_all(_card_files(paths))
    return defects


@dataclass
class Zoo:
    """A set of tool cards with their availability on this machine."""

    entries: dict[str, ZooEntry] = field(default_factory=dict)
    _by_task: dict[str, list[ZooEntry]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, folders: Iterable[Path] = (), *, builtin: bool = True) -> Zoo:
        """Load the built-in cards and those in ``folders``; any broken card raises CardError."""
        roots = ([builtin_cards_dir()] if builtin else []) + [Path(f) for f in folders]
        for code_dir in card_code_dirs(folders):
            if code_dir not in sys.path:
                sys.path.append(code_dir)
        loaded, defects = _load_all(_card_files(roots))
        if defects:
            raise CardError(defects)
        return cls.from_cards(card for card, _ in loaded).with_paths(loaded)

    @classmethod
    def from_cards(cls, cards: Iterable[ToolCard]) -> Zoo:
        """A zoo of in-memory cards (availability checked now)."""
        zoo = cls()
        for card in cards:
            zoo.add(card)
        return zoo

    def with_paths(self, loaded: list[tuple[ToolCard, Path]]) -> Zoo:
        for card, path in loaded:
            self.entries[card.name].path = path
        return self

    def add(self, card: ToolCard, path: Path | None = None) -> None:
        """Add one card; a name already in the zoo raises CardError."""
        if card.name in self.entries:
            raise CardError([CardDefect(path, "name", f"duplicate name '{card.name}'")])
        self.entries[card.name] = ZooEntry(card, path, unavailable_reason(card))
        self._by_task.setdefault(card.task, []).append(self.entries[card.name])

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
