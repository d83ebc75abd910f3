"""Selection: rank the tool cards that fit a subtask.

The scorers are registered in :data:`SCORERS` (``capability``, the default, and ``llm``); the
config's ``scorer`` names one, and installed packages add theirs through the
``orchestrator.scorers`` entry point group. A scorer class with a ``from_config(config)``
classmethod is built by it, any other is called without arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.errors import UnknownScorer
from orchestrator.plugins import Registry

if TYPE_CHECKING:
    from orchestrator.config import Config
    from orchestrator.selection.rank import Scorer

__all__ = ["SCORERS", "register_scorer", "scorer_from_config"]

SCORERS: Registry[Any] = Registry(
    "orchestrator.scorers",
    UnknownScorer,
    {
        "capability": "orchestrator.selection.rank:CapabilityScorer",
        "llm": "orchestrator.selection.llm_scorer:LLMScorer",
    },
)
"""Scorer classes, built-in and from installed packages (group ``orchestrator.scorers``)."""


def register_scorer(name: str, scorer: str | type) -> None:
    """Register a scorer class (or factory), or a lazy ``module:Class``, under ``name``."""
    SCORERS.register(name, scorer)


def scorer_from_config(config: Config) -> Scorer:
    """The scorer the config's ``scorer`` names, built from the config."""
    found = SCORERS.get(config.scorer)
    from_config = getattr(found, "from_config", None)
    scorer: Scorer = from_config(config) if from_config is not None else found()
    return scorer
