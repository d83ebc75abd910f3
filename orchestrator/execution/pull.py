"""Downloading a card's weights from the Hugging Face hub: what to fetch, how big, then fetch it.

:func:`plan_pull` asks the hub (``HfApi.model_info(files_metadata=True)``, honouring
``HF_ENDPOINT`` and ``HF_TOKEN``) which files the repo has and their sizes, and keeps only those
the card's backend kind needs (its ``hub_files``: a transformers card takes configs, tokenizer
and one format of weights). :func:`pull` downloads them with ``snapshot_download`` into the
local Hugging Face cache, where the card's backend finds them; files already there are not
fetched again, and a connection dropped mid-file resumes where it stopped. ``on_progress``
receives :class:`~orchestrator.events.PullProgress` events as bytes arrive; without it
huggingface_hub draws its own progress bars.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.cards import ToolCard
from orchestrator.cards.backend import get_backend, pull_hint
from orchestrator.errors import ToolFailed, UserError
from orchestrator.events import PullProgress
from orchestrator.execution.backends import hub_files, hub_repo

__all__ = [
    "AutoPull",
    "PullPlan",
    "hub_repo_of",
    "mark_pullable",
    "plan_pull",
    "pull",
    "pullable",
    "size_text",
]

if TYPE_CHECKING:
    from orchestrator.cards.zoo import Zoo
    from orchestrator.execution.pool import CallLimit, CallOutcome, Executor

Progress = Callable[[PullProgress], None]


@dataclass(frozen=True)
class PullPlan:
    """The files of one hub repo to fetch (name -> bytes), as of one commit, for a card or not."""

    repo: str
    revision: str
    files: dict[str, int]
    missing: frozenset[str]
    card: ToolCard | None = None

    @property
    def total_bytes(self) -> int:
        """Size of every needed file."""
        return sum(self.files.values())

    @property
    def missing_bytes(self) -> int:
        """Size of the needed files not yet in the local cache."""
        return sum(self.files[name] for name in self.missing)

    def describe(self) -> str:
        """One line: what is downloaded, how many files, how big."""
        target = f"card {self.card.name} ({self.repo})" if self.card else self.repo
        line = f"{target}: {len(self.files)} files, {size_text(self.total_bytes)}"
        if self.missing and len(self.missing) < len(self.files):
            left = size_text(self.missing_bytes)
            line += f"; {len(self.missing)} of them ({left}) still to download"
        return line


def size_text(size: int) -> str:
    """Bytes as people read them (``90.9 MB``)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def hub_repo_of(card: ToolCard) -> str | None:
    """The hub id whose weights ``card`` loads, or None when its backend downloads nothing."""
    backend: Any = get_backend(card.backend.kind)
    find = getattr(backend, "hub_repo", None)
    return find(card) if callable(find) else None


def pullable(card: ToolCard) -> bool:
    """Whether ``orchestrator pull`` can fetch what ``card`` lacks (a hub model)."""
    return hub_repo_of(card) is not None


def plan_pull(target: str, cards: list[ToolCard]) -> PullPlan:
    """What to download for ``target``: a card name, the hub id of a card, or any hub id."""
    card = next((c for c in cards if c.name == target), None)
    if card is None:
        card = next((c for c in cards if hub_repo_of(c) == target), None)
    if card is not None:
        repo = hub_repo_of(card)
        if repo is None:
            raise UserError(
                f"card {card.name} does not load weights from the Hugging Face hub "
                f"(backend kind {card.backend.kind}): there is nothing to pull"
            )
    elif hub_repo(target) is None:
        raise UserError(
            f"'{target}' is neither a card name nor a Hugging Face model id (like owner/name); "
            "see the card names with: orchestrator cards list"
        )
    else:
        repo = target
    info = _model_info(repo)
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    names = _needed(card, list(sizes))
    if not names:
        raise UserError(f"{repo} on the hub has none of the files a model needs: {sorted(sizes)}")
    return PullPlan(
        repo,
        str(info.sha),
        {name: sizes[name] for name in names},
        frozenset(n for n in names if not _cached(repo, n, str(info.sha))),
        card,
    )


def pull(plan: PullPlan, on_progress: Progress | None = None) -> str:
    """Download the plan's files into the local hub cache; return the snapshot folder."""
    from huggingface_hub import snapshot_download

    tqdm_class = None if on_progress is None else _reporting_bar(plan, on_progress)
    try:
        return str(
            snapshot_download(
                plan.repo,
                # The branch, not the commit: the cache then records main -> commit, which is
                # how the backends find the weights (and it is the commit listed a moment ago).
                allow_patterns=sorted(plan.files),
                tqdm_class=tqdm_class,
            )
        )
    except _transport_errors() as exc:
        raise UserError(
            f"downloading {plan.repo} stopped: {exc}. Files that arrived are kept; run the "
            f"same command again to finish: {pull_hint(plan.card.name if plan.card else plan.repo)}"
        ) from exc


def _needed(card: ToolCard | None, listing: list[str]) -> list[str]:
    """The repo files a card needs; for a bare hub id, by its layout, plus its model card."""
    if card is not None:
        backend: Any = get_backend(card.backend.kind)
        return list(backend.hub_files(card, listing))
    layout = "diffusers" if "model_index.json" in listing else "transformers"
    readme = ["README.md"] if "README.md" in listing else []
    return readme + hub_files(listing, layout)


def _model_info(repo: str) -> Any:
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    try:
        return HfApi().model_info(repo, files_metadata=True)
    except OfflineModeIsEnabled as exc:
        raise UserError(
            f"cannot download {repo}: HF_HUB_OFFLINE is set; unset it to let pull reach the hub"
        ) from exc
    except GatedRepoError as exc:
        raise UserError(
            f"{repo} is gated on the hub: accept its terms on its page, then set HF_TOKEN"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise UserError(
            f"no model {repo} on the hub at {constants.ENDPOINT} (or it is private: set HF_TOKEN)"
        ) from exc
    except (HfHubHTTPError, *_transport_errors()) as exc:
        raise UserError(f"cannot reach the hub at {constants.ENDPOINT} for {repo}: {exc}") from exc


def _transport_errors() -> tuple[type[Exception], ...]:
    """What a failed hub request raises: OSError (the hub's own errors) or an httpx2 error."""
    import httpx2

    return (OSError, httpx2.HTTPError)


def _cached(repo: str, name: str, revision: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, name, revision=revision), str)


def _reporting_bar(plan: PullPlan, on_progress: Progress) -> type:
    """A tqdm class for ``snapshot_download`` that reports the bytes bar as PullProgress events.

    Other bars (the file count) are kept silent. An event is sent at every 5 % and at the end.
    """
    from huggingface_hub.utils import tqdm as hf_tqdm
    from tqdm.auto import tqdm as base_tqdm

    card = plan.card.name if plan.card else plan.repo
    total = plan.missing_bytes
    step = max(total // 20, 1)

    class ReportingBar(hf_tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._bytes = kwargs.pop("name", None) == "huggingface_hub.snapshot_download"
            self._sent = -step
            kwargs.update(disable=False, file=io.StringIO())
            base_tqdm.__init__(self, *args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            due = self.n - self._sent >= step or self.n >= total
            if self._bytes and self._sent < total and due:
                self._sent = int(self.n)
                on_progress(
                    PullProgress(
                        card=card,
                        repo=plan.repo,
                        files=len(plan.missing),
                        done_bytes=min(int(self.n), total),
                        total_bytes=total,
                    )
                )
            return shown

    return ReportingBar


def mark_pullable(zoo: Zoo) -> set[str]:
    """Count as available the cards whose only lack is weights ``orchestrator pull`` fetches.

    Returns their names: an :class:`AutoPull` executor downloads them on first use. A card is
    taken when its unavailability reason ends with the pull command of its own name (the one
    fix the backend names), so a card also missing a package stays unavailable.
    """
    names = set()
    for entry in zoo:
        reason = entry.unavailable
        if reason and reason.rstrip(".").endswith(pull_hint(entry.card.name)):
            entry.unavailable = None
            names.add(entry.card.name)
    return names


class AutoPull:
    """An executor that first downloads the weights of a card still to pull, then calls it.

    Progress goes to ``emit`` as :class:`PullProgress` events; a failed download fails the call
    (:class:`ToolFailed`), so routing tries the next candidate. ``pending`` is shared by the
    runs of one orchestrator: a card is pulled once.
    """

    _lock = threading.Lock()

    def __init__(self, inner: Executor, pending: set[str], emit: Progress) -> None:
        """Wrap ``inner``; the cards named in ``pending`` are downloaded before their first call."""
        self.inner = inner
        self.pending = pending
        self.emit = emit

    def call(
        self, card: ToolCard, inputs: dict[str, Any], ctx: Any, limit: CallLimit | None = None
    ) -> CallOutcome:
        """Pull ``card`` if it is pending, then run the call on the wrapped executor."""
        if card.name in self.pending:
            with self._lock:
                if card.name in self.pending:
                    try:
                        pull(plan_pull(card.name, [card]), on_progress=self.emit)
                    except UserError as exc:
                        raise ToolFailed(card.name, f"auto_pull failed: {exc}") from exc
                    self.pending.discard(card.name)
        return self.inner.call(card, inputs, ctx, limit)

    def is_warm(self, card: ToolCard) -> bool:
        """Whether the wrapped executor has ``card`` loaded."""
        return self.inner.is_warm(card)

    def close(self) -> None:
        """The wrapped executor belongs to the orchestrator: it closes it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
