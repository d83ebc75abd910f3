"""The built-in model backends, one module per backend kind.

Each implements :class:`orchestrator.cards.backend.Backend` and is registered under its kind in
:mod:`orchestrator.cards.backend`, which imports it on first use. Each imports its heavy library
(transformers, diffusers, openai) lazily, inside ``load``.
"""

from orchestrator.execution.backends._hub import hub_files, hub_repo

__all__ = ["hub_files", "hub_repo"]
