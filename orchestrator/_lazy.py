"""Lazy ``module:attribute`` references, as the registries and python cards use them."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_entry"]


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
