"""What a card asks for beyond the sandbox's defaults, and whether the user approved it.

A card asks for its ``permissions`` and for what its backend needs (:func:`card_requests`: an
OpenAI-compatible card's endpoint and API-key variable, a local model folder); each request must
be approved by the user (``[approve.NAME]`` in the configuration, or ``--approve NAME``:
:class:`Approvals`) or the card does not run (:func:`unapproved`). The cards that ship with the
project are approved as they are. The sandbox's policy for a card's worker is built from the same
requests (:func:`orchestrator.execution.sandbox.policy.policy_for_card`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orchestrator.config import openai_base_url
from orchestrator.permissions import withheld_env

if TYPE_CHECKING:
    from orchestrator.cards.card import ToolCard
    from orchestrator.permissions import Permissions

__all__ = ["Approvals", "Requests", "card_requests", "unapproved"]


def _endpoint(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _expand(paths: list[str]) -> tuple[str, ...]:
    return tuple(os.path.abspath(os.path.expanduser(p)) for p in paths)


@dataclass(frozen=True)
class Requests:
    """What a card asks for beyond the defaults: its ``permissions`` and what its backend needs."""

    network: bool | tuple[str, ...] = False
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    env: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """One phrase per request, e.g. ``network api.openai.com:443``."""
        parts = []
        if self.network is True:
            parts.append("network (any public address)")
        elif self.network:
            parts.append("network " + ", ".join(self.network))
        for word, values in (("read", self.read), ("write", self.write), ("env", self.env)):
            if values:
                parts.append(f"{word} {', '.join(values)}")
        return parts


def card_requests(card: ToolCard) -> Requests:
    """What ``card`` asks for; paths inside its own folder are its own (no request)."""
    perms = card.permissions
    network: bool | tuple[str, ...] = (
        perms.network if isinstance(perms.network, bool) else tuple(perms.network)
    )
    env = list(perms.env)
    backend = card.backend
    if backend.kind == "openai":
        env += [backend.api_key_env, "OPENAI_BASE_URL"]
        if not network:
            endpoint = _endpoint(openai_base_url(backend.base_url))
            network = (endpoint,) if endpoint else True
    extra_read: tuple[str, ...] = ()
    needs = getattr(backend, "sandbox_requests", None)
    if callable(needs):  # a backend spec that says what its worker needs (e.g. mcp)
        endpoints, variables, extra_read = needs()
        env += list(variables)
        if endpoints and not network:
            network = tuple(endpoints)
    if backend.kind == "hf-inference":  # its token, and its base_url or the whole network
        env.append(backend.token_env)
        if not network:
            endpoint = _endpoint(backend.base_url) if backend.base_url else None
            network = (endpoint,) if endpoint else True
    if card.requires.network and not network:
        network = True
    read = list(perms.read)
    model = getattr(backend, "model", None)
    if isinstance(model, str) and model.startswith(("/", "~", ".")):
        read.append(model)  # a local model folder or file
    own = card.folder
    return Requests(
        network=network,
        read=tuple(p for p in _expand(read) if not _inside(p, own)) + _expand(list(extra_read)),
        write=_expand(list(perms.write)),
        env=tuple(dict.fromkeys(env)),
    )


def _inside(path: str, folder: Path | None) -> bool:
    return folder is not None and Path(path).is_relative_to(folder)


def unapproved(
    requests: Requests,
    approval: Permissions | bool | None,
    *,
    withheld: frozenset[str] = frozenset(),
) -> list[str]:
    """The requests ``approval`` does not cover (``True`` covers all), one phrase each.

    Variables a tool never gets (:func:`withheld_env`, or named in ``withheld``) come first.
    """
    refused = [
        f"env {name} (never given to a tool)"
        for name in requests.env
        if withheld_env(name) or name in withheld
    ]
    if approval is True:
        return refused
    network, read, write, env = _granted(approval)
    missing = []
    if requests.network is True and network is not True:
        missing.append("network (any public address)")
    elif isinstance(requests.network, tuple) and network is not True:
        missing += [f"network {e}" for e in requests.network if e not in network]
    missing += [f"read {p}" for p in requests.read if not _covered(p, read + write)]
    missing += [f"write {p}" for p in requests.write if not _covered(p, write)]
    missing += [f"env {n}" for n in requests.env if n not in env and not withheld_env(n)]
    return refused + [m for m in missing if m not in refused]


def _granted(
    approval: Permissions | bool | None,
) -> tuple[bool | tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    if approval is None or approval is False:
        return (), (), (), ()
    network = approval.network if isinstance(approval.network, bool) else tuple(approval.network)
    return (
        network if network is True else tuple(network or ()),
        _expand(list(approval.read)),
        _expand(list(approval.write)),
        tuple(approval.env),
    )


def _covered(path: str, folders: tuple[str, ...]) -> bool:
    return any(Path(path).is_relative_to(folder) for folder in folders)


@dataclass(frozen=True)
class Approvals:
    """What the user approved per card (``[approve.NAME]`` in the configuration, ``--approve``).

    ``cards``: card name -> the permissions approved (``True``: everything it asks for).
    ``withheld``: variable names never given to a tool (the server's API-key variable);
    ``withheld_values``: values never given under any name (the server's key itself).
    """

    cards: Mapping[str, Permissions | bool] = field(default_factory=dict)
    withheld: frozenset[str] = frozenset()
    withheld_values: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Any) -> Approvals:
        """The approvals of an orchestrator ``Config`` (and its server key, withheld)."""
        key = config.server.key()
        return cls(
            dict(config.approve),
            frozenset({config.server.api_key_env}),
            frozenset({key} if key else ()),
        )

    def for_card(self, card: ToolCard) -> Permissions | bool | None:
        """What is approved for ``card``: everything for a built-in card."""
        return True if card.builtin else self.cards.get(card.name)

    def problem(self, card: ToolCard) -> str | None:
        """Why ``card`` may not run as it asks (one sentence), or None."""
        missing = unapproved(card_requests(card), self.for_card(card), withheld=self.withheld)
        if not missing:
            return None
        never = [m for m in missing if m.endswith("(never given to a tool)")]
        if never:
            return f"asks for what no tool is given: {', '.join(never)}"
        return (
            f"asks for what the user has not approved: {', '.join(missing)}; approve it under "
            f"[approve.{card.name}] in orchestrator.toml, or with --approve {card.name}"
        )

    def env_allowed(self, name: str, value: str) -> bool:
        """Whether a variable may reach a tool at all (its name and value are not withheld)."""
        return not (withheld_env(name) or name in self.withheld or value in self.withheld_values)
