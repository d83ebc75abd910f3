"""The FastAPI app of ``orchestrator serve`` (see :mod:`orchestrator.server` for the API).

Imported only when the server starts: FastAPI is an optional dependency (``orchestrator[server]``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
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
from orchestrator.errors import RequestRejected, UserError
from orchestrator.events import RunStarted, RunSummary
from orchestrator.pipeline.chat import FILE_LINK
from orchestrator.pipeline.store import checkpoints_path
from orchestrator.server.files import (
    MEDIA_TYPES,
    UploadStore,
    decode_base64,
    decode_data_url,
    produced_file,
    store_input,
)
from orchestrator.server.guard import AllowedHosts, BodyLimits, Guard, client_of
from orchestrator.server.retention import UPLOADS, Claim, Retention
from orchestrator.server.runs import LiveRun, RunJob, RunService
from orchestrator.server.runs_api import add_run_routes
from orchestrator.server.wire import (
    DONE,
    AudioPart,
    ChatRequest,
    Completion,
    Delta,
    ImagePart,
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


def _upload(uploads: UploadStore, claim: Claim, file_id: str, param: str) -> Path:
    """An upload of this client, held for the run; a swept one is a 404 saying it expired."""
    retention = claim.retention
    with retention.lock:  # a sweep deletes under this lock: the file stays until the run ends
        try:
            path = uploads.path(file_id, param, claim.owner)
        except RequestRejected as exc:
            if retention.swept(file_id, claim.owner):
                what = f"the uploaded file '{file_id}'"
                raise retention.expired(what, param=param, type_="not_found_error") from None
            raise RequestRejected(
                404,
                f"{exc} ({retention.policy()})",
                type_="not_found_error",
                param=param,
                code="file_not_found",
            ) from None
        claim.add(path)
    return path


def _hold(claim: Claim, files: list[Path]) -> None:
    """Hold every file a run reads (earlier runs' files too); one swept meanwhile is a 404.

    Each must lie in an upload or a run folder of this client: another's is never read.
    """
    retention = claim.retention
    for path in files:
        item = retention.item_of(path)
        if item is None or retention.owner_of(item) != claim.owner:
            raise RequestRejected(
                404,
                f"no file '{path.name}' of yours on this server",
                type_="not_found_error",
                param="messages",
                code="file_not_found",
            )
        if not claim.add(path):
            raise claim.retention.expired(
                f"the file '{path.name}'", param="messages", type_="not_found_error"
            )


def _attachments(
    body: ChatRequest, index: int, claim: Claim, uploads: UploadStore, limit: int
) -> list[Path]:
    """The files attached to message ``index``, stored for the run (uploads held for it)."""
    files: list[Path] = []
    inputs = claim.run_dir / "inputs"
    for number, part in body.messages[index].file_parts():
        param = f"messages.{index}.content.{number}"
        if isinstance(part, ImagePart):
            data = decode_data_url(part.image_url.url, f"{param}.image_url.url")
            name = f"image-{number}"
        elif isinstance(part, AudioPart):
            data = decode_base64(part.input_audio.data, f"{param}.input_audio.data")
            name = f"audio-{number}.{part.input_audio.format}"
        elif part.file.file_id is not None:
            files.append(_upload(uploads, claim, part.file.file_id, f"{param}.file.file_id"))
            continue
        else:
            data = decode_data_url(part.file.file_data or "", f"{param}.file.file_data")
            name = part.file.filename or f"file-{number}"
        files.append(store_input(data, name, inputs, limit=limit, param=param))
    return files


def _inputs(
    body: ChatRequest, index: int, claim: Claim, uploads: UploadStore, limit: int, zoo: Zoo
) -> tuple[str, list[Path]]:
    """The run's prompt and files (attached now or earlier in the conversation), all held."""
    files = _attachments(body, index, claim, uploads, limit)
    prompt, files = _conversation_inputs(
        body,
        files,
        claim,
        lambda i: _attachments(body, i, claim, uploads, limit),
        zoo,
    )
    _hold(claim, files)
    return prompt, files


def _produced(retention: Retention, run_id: str, name: str, owner: str) -> Path:
    """A file a run made (see :func:`produced_file`); one a sweep deleted is a 404 saying so."""
    try:
        return produced_file(retention.runs_dir, run_id, name, retention.ledger, owner)
    except RequestRejected:
        if retention.swept(run_id, owner):
            what = f"the file '{name}' of run '{run_id}'"
            raise retention.expired(what, type_="not_found_error") from None
        raise


def _conversation_inputs(
    body: ChatRequest,
    files: list[Path],
    claim: Claim,
    earlier_files: Callable[[int], list[Path]] | None = None,
    zoo: Zoo | None = None,
) -> tuple[str, list[Path]]:
    """The prompt and files of the last user message, in the light of the earlier turns.

    Files the assistant made earlier are recognised by their ``/v1/files/`` links (links to
    runs of other clients are dropped first: for this client they do not exist); files
    attached to earlier user messages come from ``earlier_files(index)``.
    """
    from orchestrator.pipeline.chat import Conversation, missing_input

    messages = [_own_links(m.model_dump(exclude_none=True), claim) for m in body.messages]
    try:
        conversation, request = Conversation.from_messages(
            messages, claim.retention.runs_dir, earlier_files
        )
        missing = missing_input(zoo) if zoo is not None else None
        return conversation.inputs_for(request, files, missing)
    except UserError as exc:
        raise RequestRejected(400, str(exc), param="messages") from exc


def _own_links(message: dict[str, Any], claim: Claim) -> dict[str, Any]:
    """An assistant message without its links to files of runs this client did not start."""
    if message.get("role") != "assistant":
        return message
    ledger = claim.retention.ledger

    def keep(link: Any) -> str:
        return link.group(0) if ledger.owner("runs", link.group(1)) == claim.owner else ""

    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": FILE_LINK.sub(keep, content)}
    if isinstance(content, list):
        parts = [
            {**p, "text": FILE_LINK.sub(keep, p["text"])}
            if isinstance(p, dict) and isinstance(p.get("text"), str)
            else p
            for p in content
        ]
        return {**message, "content": parts}
    return message


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
            _inputs, body, index, claim, uploads, limit, service.zoo
        )
        job = RunJob(run_id, prompt, files, budget, run_dir, card=card, claim=claim)
        return service.start(job, asyncio.get_running_loop())
    except BaseException:
        claim.abandon()  # refused before it ran: nothing of it is kept
        raise


async def _cancel_on_disconnect(request: Request, live: LiveRun) -> None:
    """Stop the run (before its next step) as soon as the client hangs up."""
    while live.future is not None and not live.future.done():
        if await request.is_disconnected():
            live.cancel.set()
            return
        await asyncio.sleep(0.1)


async def _stream(live: LiveRun, completion: Completion, request: Request) -> AsyncIterator[str]:
    job = live.job
    base_url = str(request.base_url)
    start = RunStarted(run_id=job.run_id, model=completion.model, budget=job.budget.as_dict())
    watcher = asyncio.create_task(_cancel_on_disconnect(request, live))
    try:
        yield completion.chunk(Delta(role="assistant", content=""), orchestrator=start.wire())
        async for event in live.events():
            yield completion.chunk(Delta(), orchestrator=event.wire())
    finally:
        watcher.cancel()
        if not live.future or not live.future.done():
            live.cancel.set()  # the stream was closed early: stop the run too
    try:
        result = await live.result()
    except Exception as exc:  # a bug in the pipeline: say so in OpenAI's streamed-error shape
        log.exception("run %s failed", job.run_id)
        yield sse(error_body(f"the run failed: {type(exc).__name__}: {exc}", "server_error"))
        yield DONE
        return
    files = _file_links(result, base_url)
    yield completion.chunk(Delta(content=_content(result, files)))
    yield completion.chunk(Delta(), "stop", orchestrator=_summary(result, files).wire())
    if completion.include_usage:
        yield completion.usage_chunk(_usage(result))
    yield DONE


# --- the app -----------------------------------------------------------------------------------


def _install_error_handlers(app: Any) -> None:
    install_error_handlers(app)

    @app.exception_handler(Exception)
    def _bug(_request: Any, exc: Exception) -> Any:
        log.error("unexpected error: %s: %s", type(exc).__name__, exc)
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
        service = await asyncio.to_thread(RunService, config, zoo, retention=retention)
        state["service"] = service
        try:
            yield
        finally:
            await asyncio.to_thread(service.close)

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
        file_id, path = await asyncio.to_thread(uploads.save, data, file.filename, owner)
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
        base_url = str(request.base_url)
        if body.stream:
            events = _stream(live, completion, request)
            return StreamingResponse(events, media_type="text/event-stream")
        watcher = asyncio.create_task(_cancel_on_disconnect(request, live))
        try:
            async for _event in live.events():
                pass
        finally:
            watcher.cancel()
        result = await live.result()
        links = _file_links(result, base_url)
        summary = _summary(result, links).wire()
        content = _content(result, links)
        return completion.whole(content, "stop", _usage(result), orchestrator=summary)

    @app.get("/", include_in_schema=False)
    def index() -> Any:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    server = config.server
    max_body = limit * 4 // 3 + 1_000_000  # base64 inflates files by a third
    limits = BodyLimits(max_body, server.body_timeout_s, server.max_concurrent_bodies)
    hosts = AllowedHosts(server.host, server.allowed_hosts)
    return Guard(app, keys=server.keys(), limits=limits, hosts=hosts)
