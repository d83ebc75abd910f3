"""Options several commands take, spelled once: extra card folders and card approvals.

``orchestrator serve`` takes them too (:mod:`orchestrator.server`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["ApproveOption", "CardsOption"]

CardsOption = Annotated[
    list[Path] | None,
    typer.Option("--cards", help="extra folder of tool cards (repeatable)"),
]
ApproveOption = Annotated[
    list[str] | None,
    typer.Option(
        "--approve",
        metavar="CARD",
        help="let this card have everything its permissions ask for (repeatable)",
    ),
]
