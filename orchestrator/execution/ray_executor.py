"""Execute on a Ray cluster: an :class:`~orchestrator.execution.pool.Executor` run by Ray actors.

Optional: ``pip install 'orchestrator[ray]'``. Each card gets one Ray actor (placed anywhere in
the cluster) that keeps a sandboxed :class:`~orchestrator.execution.pool.WorkerPoolExecutor` of its
own on its node: the model stays warm in the actor's worker, and the tool runs in exactly the
sandbox it gets locally. Files do not assume a shared disk: input files travel to the actor as
bytes, and the files a call writes come back as bytes into the caller's ``ctx.scratch``.

A python card's own folder is bound into its worker as locally, so it must be at the same path
on every node (like the project itself); ``approvals`` are the user's, as for the local pool.
Independent subtasks run in parallel on different actors; calls to one card are serialized by
its actor. A call that fails, times out or loses its actor raises
:class:`~orchestrator.errors.ToolFailed` with the reason, like the local executor.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from orchestrator.cards import ToolCard, card_digest
from orchestrator.cards.approvals import Approvals
from orchestrator.cards.backend import CallContext, Usage
from orchestrator.errors import ToolFailed
from orchestrator.execution.pool import (
    CallLimit,
    CallOutcome,
    _request,
    _usage,
    _validated_outputs,
    default_timeout_s,
)

__all__ = ["RayExecutor"]

_FILE_MARK = "ray-file:"
_RAY_EXTRA = "pip install 'orchestrator[ray]'"


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"the Ray executor needs Ray: {_RAY_EXTRA}") from exc
    return ray


class _CardActor:
    """Runs one card's calls on its node, in a local sandboxed worker pool."""

    def __init__(
        self,
        sandbox_enabled: bool,
        start_timeout_s: float,
        extra_sys_path: list[str],
        approvals: Approvals | None = None,
    ) -> None:
        from orchestrator.execution.pool import WorkerPoolExecutor
        from orchestrator.execution.sandbox import Sandbox

        self.pool = WorkerPoolExecutor(
            max_workers=1,
            sandbox=Sandbox(enabled=sandbox_enabled),
            start_timeout_s=start_timeout_s,
            extra_sys_path=extra_sys_path,
            approvals=approvals,
        )
        self.root = Path(tempfile.mkdtemp(prefix="orchestrator-ray-"))

    def call(
        self,
        card_json: dict[str, Any],
        inputs: dict[str, Any],
        files: dict[str, tuple[str, bytes]],
        max_tokens: int | None,
        timeout_s: float | None,
        limit: tuple[float, str] | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        card = ToolCard.model_validate(card_json)
        if source is not None:  # its code folder: a path that must exist on this node too
            card = card.with_source(Path(source))
        work = Path(tempfile.mkdtemp(dir=self.root))
        try:
            (work / "in").mkdir()
            for index, (name, (filename, data)) in enumerate(files.items()):
                path = work / "in" / f"{index}-{os.path.basename(filename)}"
                path.write_bytes(data)
                inputs[name] = str(path)
            scratch = work / "out"
            ctx = CallContext(scratch=scratch, max_tokens=max_tokens, timeout_s=timeout_s)
            try:
                outcome = self.pool.call(
                    card, inputs, ctx, None if limit is None else CallLimit(*limit)
                )
            except ToolFailed as exc:
                return {"ok": False, "reason": exc.reason, "detail": exc.detail}
            outputs = {
                name: _FILE_MARK + str(Path(value).relative_to(scratch.resolve()))
                if isinstance(value, str) and value.startswith(str(scratch.resolve()) + "/")
                else value
                for name, value in outcome.outputs.items()
            }
            written = {
                str(p.relative_to(scratch)): p.read_bytes()
                for p in scratch.rglob("*")
                if p.is_file() and not p.is_symlink()
            }
            return {
                "ok": True,
                "outputs": outputs,
                "files": written,
                "seconds": outcome.seconds,
                "load_seconds": outcome.load_seconds,
                "usage": {
                    "input_tokens": outcome.usage.input_tokens,
                    "output_tokens": outcome.usage.output_tokens,
                },
            }
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def close(self) -> None:
        self.pool.close()
        shutil.rmtree(self.root, ignore_errors=True)


class RayExecutor:
    """Runs each card's calls in a Ray actor of its own, anywhere in the cluster.

    ``address``: the cluster to join (``None``: the one already initialised in this process, or
    a new local one). ``actor_options`` are passed to ``ray.remote`` (default: no CPU reserved,
    since the actor only forwards to its sandboxed worker; reserve CPUs to spread load).
    """

    @classmethod
    def from_config(cls, config: Any) -> RayExecutor:
        """An executor on the cluster ``ray.init`` finds ($RAY_ADDRESS, or a new local one)."""
        return cls(sandbox_enabled=config.sandbox.enabled, approvals=Approvals.from_config(config))

    def __init__(
        self,
        *,
        address: str | None = None,
        actor_options: dict[str, Any] | None = None,
        sandbox_enabled: bool = True,
        start_timeout_s: float = 120.0,
        extra_sys_path: list[str] | tuple[str, ...] = (),
        init_options: dict[str, Any] | None = None,
        approvals: Approvals | None = None,
    ) -> None:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=address, **(init_options or {}))
        self._ray = ray
        options = {"num_cpus": 0, "max_concurrency": 1, **(actor_options or {})}
        self._actor_class = ray.remote(**options)(_CardActor)
        self.sandbox_enabled = sandbox_enabled
        self.start_timeout_s = start_timeout_s
        self.extra_sys_path = [os.path.abspath(p) for p in extra_sys_path]
        self.approvals = approvals
        self._lock = threading.Lock()
        self._actors: dict[str, Any] = {}
        self._warm: set[str] = set()
        self._closed = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _actor(self, card: ToolCard) -> Any:
        key = f"{card.name}@{card_digest(card)}"
        with self._lock:
            if self._closed:
                raise RuntimeError("this executor is closed")
            actor = self._actors.get(key)
            if actor is None:
                actor = self._actor_class.remote(
                    self.sandbox_enabled, self.start_timeout_s, self.extra_sys_path, self.approvals
                )
                self._actors[key] = actor
        return actor

    def _drop(self, card: ToolCard, actor: Any) -> None:
        with self._lock:
            self._actors.pop(f"{card.name}@{card_digest(card)}", None)
            self._warm.discard(f"{card.name}@{card_digest(card)}")
        try:
            self._ray.kill(actor)
        except Exception:  # already gone: nothing left to release
            pass

    def call(
        self,
        card: ToolCard,
        inputs: dict[str, Any],
        ctx: CallContext,
        limit: CallLimit | None = None,
    ) -> CallOutcome:
        """Run the tool of ``card`` on the cluster; raise :class:`ToolFailed` on failure.

        A ``limit`` is enforced by the actor's worker pool (from when the actor starts the call).
        """
        request, file_inputs = _request(card, inputs, ctx)
        values = dict(request["inputs"])
        files = {}
        for name in file_inputs:
            path = values.pop(name)
            files[name] = (path, Path(path).read_bytes())
        timeout = ctx.timeout_s if ctx.timeout_s is not None else default_timeout_s(card)
        actor = self._actor(card)
        cold = not self.is_warm(card)
        started = time.monotonic()
        capped = None if limit is None else (limit.seconds, limit.hint)
        source = str(card.source) if card.source is not None else None
        ref = actor.call.remote(
            card.model_dump(mode="json"), values, files, ctx.max_tokens, timeout, capped, source
        )
        # The actor enforces the call timeout itself; this bound covers a lost or stuck actor.
        bound = timeout + (self.start_timeout_s if cold else 0) + 30
        if limit is not None:
            bound = min(bound, limit.seconds + 30)
        try:
            reply = self._ray.get(ref, timeout=bound)
        except self._ray.exceptions.GetTimeoutError as exc:
            self._drop(card, actor)
            raise ToolFailed(card.name, f"no answer from the Ray actor in {bound:g} s") from exc
        except self._ray.exceptions.RayError as exc:
            self._drop(card, actor)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ToolFailed(card.name, f"the Ray actor failed: {first}", str(exc)) from exc
        with self._lock:
            key = f"{card.name}@{card_digest(card)}"
            if reply["ok"] or "failed to load" not in reply.get("reason", ""):
                self._warm.add(key)
        if not reply["ok"]:
            raise ToolFailed(card.name, reply["reason"], reply.get("detail", ""))
        scratch = Path(ctx.scratch)
        for relative, data in reply["files"].items():
            target = scratch / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        outputs = {
            name: str(scratch / value[len(_FILE_MARK) :])
            if isinstance(value, str) and value.startswith(_FILE_MARK)
            else value
            for name, value in reply["outputs"].items()
        }
        checked = _validated_outputs(card, outputs, scratch)
        seconds = reply["seconds"] if reply["seconds"] else time.monotonic() - started
        usage: Usage = _usage(reply.get("usage"))
        return CallOutcome(checked, seconds, reply["load_seconds"], usage)

    def is_warm(self, card: ToolCard) -> bool:
        """Whether the card's actor has loaded its model (as far as this process has seen)."""
        with self._lock:
            return f"{card.name}@{card_digest(card)}" in self._warm

    def close(self) -> None:
        """Stop every actor (and their workers). Idempotent; the Ray cluster is left running."""
        with self._lock:
            self._closed = True
            actors = list(self._actors.values())
            self._actors.clear()
            self._warm.clear()
        for actor in actors:
            try:
                self._ray.get(actor.close.remote(), timeout=10)
            except Exception:  # the actor is gone or stuck: kill it either way
                pass
            try:
                self._ray.kill(actor)
            except Exception:  # already dead
                pass
