"""The FastAPI app of ``orchestrator serve`` (see :mod:`orchestrator.server` for the API).

Imported only when the server starts: FastAPI is an optional dependency (``orchestrator[server]``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import fastapi
from fastapi import File, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from orchestrator.budget import Budget
from orchestrator.cards.zoo import Zoo
from orchestrator.config import Config
from orchestrator.errors import RequestRejected
from orchestrator.events import RunStarted, RunSummary
from orchestrator.pipeline.store import checkpoints_path
from orchestrator.server.answer_stream import AnswerStream
from orchestrator.server.files import (
    MEDIA_TYPES,
    UploadStore,
    produced_file,
)
from orchestrator.server.guard import AllowedHosts, BodyLimits, Guard, client_of
from orchestrator.server.inputs import request_inputs
from orchestrator.server.retention import UPLOADS, Retention
from orchestrator.server.runs import LiveRun, RunJob, RunService
from orchestrator.server.runs_api import add_run_routes
from orchestrator.server.wire import (
    DONE,
    ChatRequest,
    Completion,
    Delta,
    ModelEntry,
    ModelList,
    Usage,
    error_body,
    install_error_handlers,
    sse,
)

__all__ = ["build_app"]

log = logging.getLogger("orchestrator.server")

PIPELINE_MODEL = "orchestrator"
WEB_DIR = Path(__file__).resolve().parent / "web"


# --- requests to runs --------------------------------------------------------------------------


def _model_entries(zoo: Zoo, created: int) -> list[ModelEntry]:
    entries = [
        ModelEntry(
            id=PIPELINE_MODEL,
            created=created,
            owned_by="orchestrator",
            description="the whole pipeline: plan, select a model per subtask, run, answer",
        )
    ]
    for entry in sorted(zoo, key=lambda e: e.card.name):
        if entry.available:
            entries.append(
                ModelEntry(
                    id=entry.card.name,
                    created=created,
                    owned_by="orchestrator",
                    task=entry.card.task,
                    description=entry.card.description,
                )
            )
    return entries


def _check_model(zoo: Zoo, model: str) -> str | None:
    """The card a request names (None for the whole pipeline); unknown names are a 404."""
    if model == PIPELINE_MODEL:
        return None
    if model not in zoo:
        raise RequestRejected(
            404,
            f"The model '{model}' does not exist; use '{PIPELINE_MODEL}' or a card name "
            "from GET /v1/models",
            param="model",
            code="model_not_found",
        )
    entry = zoo.get(model)
    if not entry.available:
        raise RequestRejected(
            400,
            f"the model '{model}' cannot run here: {entry.unavailable}",
            param="model",
            code="model_unavailable",
        )
    return model


def _produced(retention: Retention, run_id: str, name: str, owner: str) -> Path:
    """A file a run made (see :func:`produced_file`); one a sweep deleted is a 404 saying so."""
    try:
        return produced_file(retention.runs_dir, run_id, name, retention.ledger, owner)
    except RequestRejected:
        if retention.swept(run_id, owner):
            what = f"the file '{name}' of run '{run_id}'"
            raise retention.expired(what, type_="not_found_error") from None
        raise


def _file_links(result: Any, base_url: str) -> list[dict[str, str]]:
    run_dir = Path(result.run_dir).resolve() if result.run_dir else None
    links = []
    for artifact in result.artifacts:
        path = Path(artifact).resolve()
        if run_dir is None or not path.is_relative_to(run_dir):
            continue
        relative = path.relative_to(run_dir).as_posix()
        ext = path.suffix.lstrip(".").lower()
        mime = MEDIA_TYPES.get(ext, "application/octet-stream")
        links.append(
            {
                "name": path.name,
                "url": f"{base_url}v1/files/{result.run_id}/{relative}",
                "type": mime.split("/")[0],
                "mime": mime,
            }
        )
    return links


def _summary(result: Any, files: list[dict[str, str]]) -> RunSummary:
    return RunSummary(
        run_id=result.run_id,
        status=result.status,
        message=result.message,
        plan=result.plan.model_dump(mode="json") if result.plan else None,
        steps=[
            {
                "step": s.step,
                "task": s.task,
                "instruction": s.instruction,
                "status": s.status,
                "card": s.card,
                "seconds": s.seconds,
                "usd": s.usd,
                "attempts": len(s.attempts),
            }
            for s in result.steps
        ],
        spent=result.spent,
        budget_left=result.budget_left,
        files=files,
    )


def _content(result: Any, files: list[dict[str, str]]) -> str:
    text = result.answer or result.message or f"The run ended with status '{result.status}'."
    if files:
        text += "\n\nFiles:\n" + "\n".join(f"- [{f['name']}]({f['url']})" for f in files)
    return text


def _usage(result: Any) -> Usage:
    return Usage.of(0, int(result.spent.get("tokens", 0) or 0))


async def _queue_run(
    body: ChatRequest,
    card: str | None,
    budget: Budget,
    service: RunService,
    uploads: UploadStore,
    limit: int,
    owner: str,
) -> LiveRun:
    """Store the request's files in a new run folder (held from sweeps) and queue its run."""
    index, message = body.last_user()
    if not message.text().strip():
        raise RequestRejected(
            400,
            f"messages.{index} has no text: say what you want done with "
            + ("the attached file" if message.file_parts() else "the model"),
            param=f"messages.{index}.content",
            code="empty_request",
        )
    run_id = uuid.uuid4().hex[:12]
    run_dir = service.retention.runs_dir / run_id
    claim = await asyncio.to_thread(service.retention.claim, run_dir, owner)
    try:
        prompt, files = await asyncio.to_thread(
            request_inputs, body, index, claim, uploads, limit, service.zoo
        )
        job = RunJob(run_id, prompt, files, budget, run_dir, card=card, claim=claim)
        return service.start(job)
    except BaseException:
        claim.abandon()  # refused before it ran: nothing of it is kept
        raise


async def _cancel_on_disconnect(request: Request, live: LiveRun) -> None:
    """Cancel the run's task (it stops after its step in flight) once the client hangs up."""
    while not live.done:
        if await request.is_disconnected():
            live.stop()
            return
        await asyncio.sleep(0.1)


async def _stream(live: LiveRun, completion: Completion, request: Request) -> AsyncIterator[str]:
    job = live.job
    base_url = str(request.base_url)
    start = RunStarted(run_id=job.run_id, model=completion.model, budget=job.budget.as_dict())
    watcher = asyncio.create_task(_cancel_on_disconnect(request, live))
    answer = AnswerStream()  # a final step's streamed text goes out as content deltas
    try:
        yield completion.chunk(Delta(role="assistant", content=""), orchestrator=start.wire())
        async for event in live.events():
            text = answer.content(event)
            delta = Delta(content=text) if text else Delta()
            yield completion.chunk(delta, orchestrator=event.wire())
    finally:
        watcher.cancel()
        live.stop()  # the stream was closed early: cancel the run too (no-op once it ended)
    try:
        result = await live.result()
    except asyncio.CancelledError:
        return  # stopped by the client, who is gone
    except Exception as exc:  # a bug in the pipeline: say so in OpenAI's streamed-error shape
        log.exception("run %s failed", job.run_id)
        yield sse(error_body(f"the run failed: {type(exc).__name__}: {exc}", "server_error"))
        yield DONE
        return
    files = _file_links(result, base_url)
    rest = answer.rest(_content(result, files))
    if rest:
        yield completion.chunk(Delta(content=rest))
    yield completion.chunk(Delta(), "stop", orchestrator=_summary(result, files).wire())
    if completion.include_usage:
        yield completion.usage_chunk(_usage(result))
    yield DONE


async def _whole(live: LiveRun, completion: Completion, request: Request) -> Any:
    """The answer as one JSON body once the run ends (a client gone meanwhile cancels it)."""
    watcher = asyncio.create_task(_cancel_on_disconnect(request, live))
    try:
        async for _event in live.events():
            pass
        result = await live.result()
    except asyncio.CancelledError:
        if not live.stopped:
            raise
        body = error_body("the client cancelled the request", code="cancelled")
        return JSONResponse(body, status_code=499)  # nobody is listening any more
    finally:
        watcher.cancel()
        live.stop()
    links = _file_links(result, str(request.base_url))
    summary = _summary(result, links).wire()
    content = _content(result, links)
    return completion.whole(content, "stop", _usage(result), orchestrator=summary)


# --- the app -----------------------------------------------------------------------------------


def _install_error_handlers(app: Any) -> None:
    install_error_handlers(app)

    @app.exception_handler(Exception)
    def _bug(_request: Any, exc: Exception) -> Any:
        log.exception("unexpected error: %s: %s", type(exc).__name__, exc)
        body = error_body(f"internal error: {type(exc).__name__}", "server_error")
        return JSONResponse(body, status_code=500)


def _add_upload_routes(app: Any, uploads: UploadStore, retention: Retention) -> None:
    """List, describe, read and delete uploads (registered before the produced-files route)."""

    @app.get("/v1/files")
    def list_files(
        request: Request, after: str | None = None, limit: int = 10_000
    ) -> dict[str, Any]:
        owner = client_of(request.scope)
        ids = uploads.ids(owner)
        if after in ids:  # the SDK pages on with the last id it got
            ids = ids[ids.index(after) + 1 :]
        page = ids[: max(limit, 1)]
        return {
            "object": "list",
            "data": [uploads.info(i, owner) for i in page],
            "has_more": len(page) < len(ids),
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }

    @app.get("/v1/files/{file_id}")
    def file_info(file_id: str, request: Request) -> dict[str, Any]:
        return uploads.info(file_id, client_of(request.scope))

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str, request: Request) -> Any:
        path = uploads.path(file_id, "file_id", client_of(request.scope))
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix.lstrip(".").lower()))

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str, request: Request) -> dict[str, Any]:
        with retention.lock:  # a run that attaches it meanwhile waits for this
            folder = uploads.path(file_id, "file_id", client_of(request.scope)).parent
            if retention.is_held(folder):
                raise RequestRejected(
                    409,
                    f"the file '{file_id}' is used by a request that is running; "
                    "delete it when that request has finished",
                    code="file_in_use",
                )
            shutil.rmtree(folder)
            retention.ledger.forget(UPLOADS, file_id)
        return {"id": file_id, "object": "file", "deleted": True}


def build_app(config: Config, zoo: Zoo) -> Any:
    """The ASGI app: FastAPI routes behind the key and body-size guard."""
    limit = config.server.max_upload_bytes
    state: dict[str, Any] = {}
    runs_dir = Path(config.runs_dir).resolve()
    retention = Retention.from_config(runs_dir, config.server, checkpoints_path(config))

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await asyncio.to_thread(retention.sweep_safely)
        # Runs take threads of the loop's default executor (astream): room for all of them
        # besides the short file and sweep jobs that use it too.
        threads = config.server.max_concurrent_runs + (os.cpu_count() or 1) + 4
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(threads, thread_name_prefix="orchestrator")
        )
        service = await asyncio.to_thread(RunService, config, zoo, retention=retention)
        state["service"] = service
        try:
            yield
        finally:
            await service.aclose()

    app = fastapi.FastAPI(title="orchestrator", lifespan=lifespan, docs_url=None, redoc_url=None)
    _install_error_handlers(app)
    uploads = UploadStore(runs_dir / UPLOADS, limit, retention.ledger)
    created = int(time.time())
    models = _model_entries(zoo, created)

    @app.get("/health")
    def health() -> dict[str, Any]:
        service = state.get("service")
        return {"status": "ok", "active_runs": service.active if service else 0}

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return ModelList(data=models).model_dump(mode="json")

    @app.get("/v1/models/{model_id}")
    def get_model(model_id: str) -> dict[str, Any]:
        _check_model(zoo, model_id)
        return next(m for m in models if m.id == model_id).model_dump(mode="json")

    @app.post("/v1/files")
    async def upload(
        request: Request,
        file: Annotated[UploadFile, File()],
        purpose: Annotated[str, Form()] = "user_data",
    ) -> dict[str, Any]:
        data = await file.read(limit + 1)
        owner = client_of(request.scope)
        file_id, path = await asyncio.to_thread(
            uploads.save, data, file.filename, owner, file.content_type
        )
        retention.maybe_sweep()
        return {
            "id": file_id,
            "object": "file",
            "bytes": path.stat().st_size,
            "created_at": int(time.time()),
            "filename": path.name,
            "purpose": purpose,
            "status": "processed",
        }

    _add_upload_routes(app, uploads, retention)
    add_run_routes(app, state, retention)

    @app.get("/v1/files/{run_id}/{name:path}")
    def get_file(run_id: str, name: str, request: Request) -> Any:
        path = _produced(retention, run_id, name, client_of(request.scope))
        media = MEDIA_TYPES[path.suffix.lstrip(".").lower()]
        return FileResponse(path, media_type=media)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        card = _check_model(zoo, body.model)
        budget = (
            body.budget.within(config.budget.to_budget())
            if body.budget
            else config.budget.to_budget()
        )
        owner = client_of(request.scope)
        live = await _queue_run(body, card, budget, state["service"], uploads, limit, owner)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        completion = Completion(body.model, include_usage=include_usage)
        if body.stream:
            events = _stream(live, completion, request)
            return StreamingResponse(events, media_type="text/event-stream")
        return await _whole(live, completion, request)

    @app.get("/", include_in_schema=False)
    def index() -> Any:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    server = config.server
    max_body = limit * 4 // 3 + 1_000_000  # base64 inflates files by a third
    limits = BodyLimits(max_body, server.body_timeout_s, server.max_concurrent_bodies)
    hosts = AllowedHosts(server.host, server.allowed_hosts)
    return Guard(app, keys=server.keys(), limits=limits, hosts=hosts)
