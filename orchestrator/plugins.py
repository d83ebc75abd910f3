"""Lazy ``module:attribute`` references, as the registries and python cards use them."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["import_entry", "locate_module"]


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
