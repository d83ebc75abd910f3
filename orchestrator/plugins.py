"""Registries of named parts, open to other packages, and lazy ``module:attribute`` references.

Every kind of part (backends, planners, router policies, scorers, executors) has one
:class:`Registry`. The built-ins are registered in it by ``module:attribute`` reference and
imported on first use; an installed package adds its own through an ``importlib.metadata`` entry
point in the registry's group (e.g. ``orchestrator.backends``), found the first time the registry
is asked for a name. A plugin that fails to import raises :class:`~orchestrator.errors.PluginError`
naming its distribution when (and only when) its name is asked for.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from orchestrator.errors import PluginError

__all__ = ["Registry", "import_entry", "locate_module"]

T = TypeVar("T")


def locate_module(name: str, last: Sequence[str] = ()) -> str | None:
    """Where ``name`` (dotted) would be imported from, found without running any module.

    The interpreter's own path is searched first and the folders ``last`` after it, as in a
    sandboxed worker; a package's ``__init__`` is never executed to find its submodules.
    Returns the module's file (or package folder), or None when it is not found.
    """
    loaded = sys.modules.get(name)
    if loaded is not None:  # already imported here (e.g. os.path, an alias no finder knows)
        return getattr(loaded, "__file__", None) or name
    parts = name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        spec = None
    if spec is None and last:
        spec = importlib.machinery.PathFinder.find_spec(parts[0], list(last))
    for index in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        full = ".".join(parts[: index + 1])
        spec = importlib.machinery.PathFinder.find_spec(full, list(spec.submodule_search_locations))
    if spec is None:
        return None
    return spec.origin or next(iter(spec.submodule_search_locations or []), None)


def import_entry(entry: str) -> Any:
    """The object ``entry`` (``module:attribute``) names; the module is imported now."""
    module_name, _, attribute = entry.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        where = getattr(module, "__file__", None) or module_name
        raise AttributeError(
            f"{entry}: module {module_name} ({where}) has no '{attribute}'"
        ) from None


class Registry(Generic[T]):
    """Named parts of one kind: built-ins, ``register`` calls and installed entry points alike.

    ``group`` is the entry-point group other packages add to. ``unknown(name, known)`` builds the
    error an unknown name raises. ``finish`` turns what is registered (or what an entry names)
    into the part ``get`` returns, e.g. a backend class into an instance; it runs once per name,
    on its first ``get``.
    """

    def __init__(
        self,
        group: str,
        unknown: Callable[[str, list[str]], Exception],
        builtins: dict[str, T | str] | None = None,
        finish: Callable[[Any], T] | None = None,
    ) -> None:
        self.group = group
        self._unknown = unknown
        self._finish = finish or (lambda found: found)
        self._entries: dict[str, Any] = dict(builtins or {})
        self._parts: dict[str, T] = {}  # finished, by name
        self._discovered = False

    def register(self, name: str, part: T | str) -> None:
        """Register ``part``, or a lazy ``module:attribute`` reference to it, under ``name``.

        A registered name replaces what was there (an entry point or a built-in of that name).
        """
        self._discover()
        self._entries[name] = part
        self._parts.pop(name, None)

    def names(self) -> list[str]:
        """Every registered name, entry points of installed packages included, sorted."""
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def get(self, name: str) -> T:
        """The part registered under ``name``, imported (and finished) on first use."""
        self._discover()
        if name in self._parts:
            return self._parts[name]
        try:
            entry = self._entries[name]
        except KeyError:
            raise self._unknown(name, sorted(self._entries)) from None
        if isinstance(entry, importlib.metadata.EntryPoint):
            entry = _load_entry_point(entry, self.group)
        elif isinstance(entry, str):
            entry = import_entry(entry)
        part = self._parts[name] = self._finish(entry)
        return part

    def _discover(self) -> None:
        """Add the entry points of installed packages, once; a built-in name is not replaced."""
        if self._discovered:
            return
        self._discovered = True
        for point in importlib.metadata.entry_points(group=self.group):
            if point.name in self._entries:
                warnings.warn(
                    f"{_origin(point, self.group)} is ignored: '{point.name}' is already "
                    "registered; rename the plugin's entry point",
                    stacklevel=3,
                )
                continue
            self._entries[point.name] = point


def _origin(point: importlib.metadata.EntryPoint, group: str) -> str:
    dist = point.dist.name if point.dist is not None else "an unnamed distribution"
    return f"entry point '{point.name} = {point.value}' (group {group}) of {dist}"


def _load_entry_point(point: importlib.metadata.EntryPoint, group: str) -> Any:
    try:
        return point.load()
    except Exception as exc:  # noqa: BLE001 - any failure of a plugin's import is reported
        raise PluginError(
            f"{_origin(point, group)} failed to load: {type(exc).__name__}: {exc}; "
            "fix or uninstall that package"
        ) from exc
