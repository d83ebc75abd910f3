"""Capability profiles: the file beside a card with its scores on its aptitude test.

A card is profiled by running its model on the aptitude test of its task type
(:func:`orchestrator.execution.profiling.profile_card`); the result is written next to the card
as ``<name>.profile.json`` (:func:`write_profile`) with the per-probe scores and seconds, the
median latency and the cost per call, the digest of the card's content and that of the test: a
changed card, or a changed test, no longer matches its profile and is profiled again. The zoo
attaches a matching profile to its card when it loads (:func:`attach_profile`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.cards import CapabilityProfile, ProbeResult, ToolCard, card_digest
from orchestrator.cards.probes.aptitude import probes_digest, probes_for
from orchestrator.errors import UserError

__all__ = [
    "attach_profile",
    "profile_path",
    "read_profile",
    "write_profile",
]

MAX_PROFILE_BYTES = 4 * 2**20  # a profile is a small JSON file beside its card: read no more


def profile_path(card_path: Path) -> Path:
    """``orchestrator/cards/builtin/x.yaml`` -> ``orchestrator/cards/builtin/x.profile.json``."""
    return card_path.with_name(card_path.stem + ".profile.json")


def read_profile(card_path: Path) -> dict[str, Any] | None:
    """The profile file next to a card, or None when there is none."""
    path = profile_path(card_path)
    if not path.is_file():
        return None
    with path.open("rb") as file:
        text = file.read(MAX_PROFILE_BYTES + 1)
    if len(text) > MAX_PROFILE_BYTES:
        raise UserError(
            f"{path}: larger than {MAX_PROFILE_BYTES // 2**20} MB, too large for a profile; "
            "delete it and profile again"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}); delete it and profile again") from exc
    return data if isinstance(data, dict) else None


def attach_profile(card: ToolCard, card_path: Path | None) -> ToolCard:
    """The card with the profile next to it, if that profile was made from this exact card."""
    if card_path is None or card.profile is not None:
        return card
    data = read_profile(card_path)
    if not data or data.get("card_digest") != card_digest(card):
        return card  # no profile, or a stale one: the card changed since it was profiled
    if not _same_probes(data, card, card_path):
        return card  # stale: the aptitude test changed since
    profile = CapabilityProfile(
        card_digest=data["card_digest"],
        probes=[ProbeResult(**p) for p in data.get("probes", [])],
        latency_s=data.get("latency_s"),
        usd_per_call=data.get("usd_per_call"),
    )
    return card.model_copy(update={"profile": profile})


def _same_probes(data: dict[str, Any], card: ToolCard, card_path: Path) -> bool:
    """Whether a profile was made on the probes the card would be profiled on now."""
    made_on = data.get("probes_digest")
    if made_on is None:
        return True  # made before tests were digested: kept
    try:
        return bool(made_on == probes_digest(probes_for(card, card_path)))
    except UserError:
        return False


def write_profile(card_path: Path, record: dict[str, Any]) -> Path:
    """Write the profile next to its card; return the file written."""
    path = profile_path(card_path)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path
