"""What a chat request gives its run: the prompt and the files, each held for the run.

Files come attached to messages (images, audio, uploads by ``file_id``, inline ``file_data``),
named by their upload id in a message's text ("summarise file-3f2a..."), or from earlier turns
of the conversation (files the assistant made, linked as ``/v1/files/...``). Every file is held
from retention sweeps until the run ends; one of another client is as unknown as a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.cards.zoo import Zoo
from orchestrator.errors import RequestRejected, UserError
from orchestrator.pipeline.chat import FILE_LINK
from orchestrator.server.files import (
    UploadStore,
    data_url_type,
    decode_base64,
    decode_data_url,
    file_ids_in,
    how_to_attach,
    store_input,
)
from orchestrator.server.retention import Claim
from orchestrator.server.wire import AudioPart, ChatRequest, ImagePart

__all__ = ["request_inputs"]


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
            url = part.file.file_data or ""
            data = decode_data_url(url, f"{param}.file.file_data")
            name = part.file.filename or f"file-{number}"
            kind = data_url_type(url)
            files.append(store_input(data, name, inputs, limit=limit, param=param, media_type=kind))
            continue
        files.append(store_input(data, name, inputs, limit=limit, param=param))
    return files


def _named_uploads(body: ChatRequest, claim: Claim, uploads: UploadStore) -> dict[str, Path]:
    """The uploads the user messages name by id in their text, held for the run.

    An id this client has no upload of is a 404 naming it and saying how to attach the file.
    """
    found: dict[str, Path] = {}
    for index, message in enumerate(body.messages):
        if message.role != "user":
            continue
        for file_id in file_ids_in(message.text()):
            if file_id in found:
                continue
            param = f"messages.{index}.content"
            try:
                found[file_id] = _upload(uploads, claim, file_id, param)
            except RequestRejected as exc:
                if exc.code == "file_expired":
                    raise
                raise RequestRejected(
                    exc.status,
                    f"messages.{index} names the file id '{file_id}', but {exc}; "
                    + how_to_attach(file_id),
                    type_=exc.type_,
                    param=param,
                    code=exc.code,
                ) from None
    return found


def request_inputs(
    body: ChatRequest, index: int, claim: Claim, uploads: UploadStore, limit: int, zoo: Zoo
) -> tuple[str, list[Path]]:
    """The run's prompt and files (attached now or earlier in the conversation), all held.

    Upload ids named in the text stand for their files: each is replaced by the file's path
    and, in the last message, attached.
    """
    named = _named_uploads(body, claim, uploads)
    files = _attachments(body, index, claim, uploads, limit)
    files += [named[i] for i in file_ids_in(body.messages[index].text())]
    prompt, files = _conversation_inputs(
        body,
        files,
        claim,
        lambda i: _attachments(body, i, claim, uploads, limit),
        zoo,
        named,
    )
    _hold(claim, files)
    return prompt, files


def _conversation_inputs(
    body: ChatRequest,
    files: list[Path],
    claim: Claim,
    earlier_files: Callable[[int], list[Path]] | None = None,
    zoo: Zoo | None = None,
    named: dict[str, Path] | None = None,
) -> tuple[str, list[Path]]:
    """The prompt and files of the last user message, in the light of the earlier turns.

    Files the assistant made earlier are recognised by their ``/v1/files/`` links (links to
    runs of other clients are dropped first: for this client they do not exist); files
    attached to earlier user messages come from ``earlier_files(index)``.
    """
    from orchestrator.pipeline.chat import Conversation, missing_input

    messages = [
        _with_paths(_own_links(m.model_dump(exclude_none=True), claim), named or {})
        for m in body.messages
    ]
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


def _with_paths(message: dict[str, Any], named: dict[str, Path]) -> dict[str, Any]:
    """A user message with the upload ids it names replaced by the uploads' paths."""
    if message.get("role") != "user" or not named:
        return message

    def swap(text: str) -> str:
        for file_id, path in named.items():
            shown = f'"{path}"' if any(c.isspace() for c in str(path)) else str(path)
            text = re.sub(rf"(?<![\w/.-]){re.escape(file_id)}(?![\w-])", shown, text)
        return text

    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": swap(content)}
    if isinstance(content, list):
        parts = [
            {**p, "text": swap(p["text"])} if isinstance(p, dict) and p.get("type") == "text" else p
            for p in content
        ]
        return {**message, "content": parts}
    return message
