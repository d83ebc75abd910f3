"""The ``orchestrator`` command line: ``app`` (see :mod:`orchestrator.cli.main`)."""

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing one command's module does not build the whole command line.
    if name == "app":
        from orchestrator.cli.main import app

        return app
    raise AttributeError(f"module 'orchestrator.cli' has no attribute {name!r}")
