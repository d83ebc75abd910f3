"""The stored runs of ``orchestrator serve``: list, show and resume a client's own runs.

``GET /v1/runs`` lists the runs the calling client started (its id, status and what it spent,
as ``orchestrator runs list --json`` shows them), ``GET /v1/runs/RUN_ID`` shows one as
``orchestrator runs show --json`` does, and ``POST /v1/runs/RUN_ID/resume`` continues one that
did not finish, without repeating the steps that did, and answers with the result. A run is the
client's when the server's ledger records it so; another client's run is a 404, as if it did not
exist. With a PostgreSQL run store the runs and the ledger are shared, so any server on that
database lists, shows and resumes the runs any of them started (one at a time: a run being run
or resumed elsewhere is a 409).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request

from orchestrator.errors import RequestRejected, RunInProgress, UserError
from orchestrator.server.guard import client_of
from orchestrator.server.retention import Claim, Retention

__all__ = ["add_run_routes"]


def _mine(retention: Retention, run_id: str, owner: str) -> str:
    """``run_id`` when ``owner`` started it on a server sharing this store; else a 404."""
    if retention.ledger.owner("runs", run_id) != owner:
        raise RequestRejected(
            404,
            f"no run '{run_id}' of yours: list yours with GET /v1/runs",
            type_="not_found_error",
            code="run_not_found",
        )
    return run_id


def _stored(call: Any) -> Any:
    """``call()``; a run in progress elsewhere is a 409, a run the store lacks a 404."""
    try:
        return call()
    except RunInProgress as exc:
        raise RequestRejected(409, str(exc), code="run_in_progress") from exc
    except UserError as exc:
        raise RequestRejected(404, str(exc), type_="not_found_error", code="run_not_found") from exc


def add_run_routes(app: Any, state: dict[str, Any], retention: Retention) -> None:
    """Register the ``/v1/runs`` routes; ``state['service']`` is the running RunService."""

    def orchestrator() -> Any:
        return state["service"].orchestrator

    @app.get("/v1/runs")
    def list_runs(request: Request) -> dict[str, Any]:
        mine = set(retention.ledger.names_of("runs", client_of(request.scope)))
        rows = [row for row in orchestrator().runs() if row["run_id"] in mine]
        return {"object": "list", "data": rows}

    @app.get("/v1/runs/{run_id}")
    def show_run(run_id: str, request: Request) -> dict[str, Any]:
        _mine(retention, run_id, client_of(request.scope))
        result: dict[str, Any] = _stored(lambda: orchestrator().show(run_id)).to_dict()
        return result

    @app.post("/v1/runs/{run_id}/resume")
    async def resume_run(run_id: str, request: Request) -> dict[str, Any]:
        owner = client_of(request.scope)
        await asyncio.to_thread(_mine, retention, run_id, owner)
        claim = Claim(retention, retention.runs_dir / run_id, owner)
        claim.add(retention.runs_dir / run_id)  # its folder is kept from sweeps while it runs
        try:
            result = await asyncio.to_thread(_stored, lambda: orchestrator().resume(run_id))
        finally:
            claim.release()
            retention.maybe_sweep()
        return dict(result.to_dict())
