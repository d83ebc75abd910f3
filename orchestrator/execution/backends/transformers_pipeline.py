"""Backend for transformers models: a ``pipeline`` from a hub id, a local folder or a GGUF file.

Inputs and outputs follow the card. The first required input is the pipeline's main input
(text, an image path, an audio path); any other input the caller gives is passed to the pipeline
as a keyword argument of the same name (e.g. ``candidate_labels``). The pipeline's result fills
every output by its type: text takes the generated / summary / translation / text / label field of
the first result, json takes the whole result made JSON-safe, image and audio outputs are files
written under ``ctx.scratch``.

Generative tasks honour ``ctx.max_tokens`` as ``max_new_tokens`` and count tokens into
``ctx.usage``. For ``text-generation`` a tokenizer's chat template, when it has one, wraps the
input as a user message and only the new text is returned. When the caller streams
(``ctx.on_text``), a text-generation card sends its text piece by piece as the tokens are made
(transformers' ``TextStreamer``, called in the generating thread); its text output is then the
pieces joined, which is the generated text with its leading and trailing whitespace left out.

transformers 5 removed the ``summarization``, ``translation`` and ``text2text-generation``
pipelines; those tasks run here through ``AutoModelForSeq2SeqLM.generate`` with the same
result keys, whatever the installed version. ``image-to-text`` runs as ``image-text-to-text``
where the former is gone (with an empty text prompt unless the card gives one).

A card with ``gguf_file`` is dequantized once and saved as safetensors in the orchestrator's
model cache (``$ORCHESTRATOR_CACHE_DIR/models``, default ``~/.cache/orchestrator/models``);
later loads read that copy.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
import uuid
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.cards import IOSpec, ToolCard, TransformersBackend
from orchestrator.cards.backend import CallContext, Tool
from orchestrator.config import cache_dir
from orchestrator.errors import ToolFailed
from orchestrator.execution.backends._hub import (
    hub_files,
    hub_repo,
    locate_model,
    missing_modules_reason,
)

__all__ = ["TransformersPipelineBackend", "dequantized_gguf_folder", "model_cache_dir"]

_TEXT_KEYS = ("generated_text", "summary_text", "translation_text", "text", "answer", "label")
_SEQ2SEQ_KEYS = {"summarization": "summary_text", "translation": "translation_text"}
_IMAGE_TO_TEXT = {"image-to-text", "image-text-to-text"}
_DEFAULT_MAX_NEW_TOKENS = 256
_STALE_TEMP_S = 3600.0


class TransformersPipelineBackend:
    """Loads transformers pipelines on the CPU from weights already on this machine."""

    spec = TransformersBackend

    def unavailable_reason(self, card: ToolCard) -> str | None:
        """Missing libraries or weights; never loads a model nor touches the network."""
        spec = _spec(card)
        modules = ["torch", "transformers"]
        if spec.gguf_file:
            modules += ["gguf", "accelerate"]
        reason = missing_modules_reason(modules)
        if reason:
            return reason
        return locate_model(spec.model, "transformers", spec.gguf_file, card.name).reason

    def hub_repo(self, card: ToolCard) -> str | None:
        """The hub id ``orchestrator pull`` downloads for this card (None: not a hub model)."""
        return hub_repo(_spec(card).model)

    def hub_files(self, card: ToolCard, listing: list[str]) -> list[str]:
        """Which of the repo's files this card needs: configs, tokenizer, one weights format."""
        return hub_files(listing, "transformers", _spec(card).gguf_file)

    def load(self, card: ToolCard) -> Tool:
        """Build the pipeline (or the seq2seq generator) and wrap it as a tool."""
        spec = _spec(card)
        location = locate_model(spec.model, "transformers", spec.gguf_file)
        if location.folder is None:
            raise FileNotFoundError(f"card {card.name}: {location.reason}")
        task = spec.task
        options = _construction_options(spec.options)
        if spec.gguf_file:
            folder = dequantized_gguf_folder(location.folder / spec.gguf_file)
            runner: Any = _pipeline_from_folder(task, folder, options)
        elif _seq2seq_key(task):
            runner = _Seq2SeqGenerator(task, location.folder, options)
        else:
            from transformers import pipeline
            from transformers.pipelines import SUPPORTED_TASKS

            if task == "image-to-text" and task not in SUPPORTED_TASKS:  # removed in 5.x
                task = "image-text-to-text"

            runner = pipeline(task, model=str(location.folder), **options)
        return PipelineTool(card, task, runner, dict(spec.call_options))


class PipelineTool:
    """A loaded transformers pipeline, called with card inputs and returning card outputs."""

    def __init__(self, card: ToolCard, task: str, runner: Any, call_options: dict[str, Any]):
        """Wrap ``runner`` (a pipeline or a seq2seq generator) for ``card``."""
        self.card = card
        self.task = task
        self.runner = runner
        self.call_options = call_options
        self.main = _main_input(card)

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Run the model on ``inputs`` and map its result to the card's outputs."""
        if self.main.name not in inputs:
            raise ToolFailed(self.card.name, f"missing input '{self.main.name}'")
        value = _main_value(self.main, inputs[self.main.name], self.runner)
        names = {io.name for io in self.card.inputs}
        extra = {
            k: v for k, v in inputs.items() if k != self.main.name and k in names and v is not None
        }
        kwargs = {**self.call_options, **extra}
        if self.task == "text-generation":
            result: Any = self._generate(value, kwargs, ctx)
        elif isinstance(self.runner, _Seq2SeqGenerator):
            result = self.runner(value, _with_token_cap(kwargs, ctx), ctx)
        else:
            if self.task in _IMAGE_TO_TEXT:
                kwargs = _with_token_cap(kwargs, ctx)
            if self.task == "image-text-to-text":
                kwargs.setdefault("text", "")  # no prompt: a plain caption
            result = self.runner(value, **kwargs)
        return _outputs(self.card, result, ctx)

    def _generate(self, prompt: str, kwargs: dict[str, Any], ctx: CallContext) -> list[dict]:
        """Causal LM generation: chat template when there is one, new text only, tokens counted.

        An input named ``system`` becomes the system message (or a first paragraph without a
        chat template).
        """
        tokenizer = self.runner.tokenizer
        system = kwargs.pop("system", None)
        special = kwargs.pop("add_special_tokens", True)
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}]
            if system:
                messages.insert(0, {"role": "system", "content": system})
            prompt = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            special = False  # the template already has them
        elif system:
            prompt = f"{system}\n\n{prompt}"
        kwargs["add_special_tokens"] = special
        prompt_ids = tokenizer(prompt, add_special_tokens=special)["input_ids"]
        kwargs = _with_token_cap(kwargs, ctx)
        kwargs.setdefault("max_new_tokens", _DEFAULT_MAX_NEW_TOKENS)
        for key in ("return_full_text", "return_text"):
            kwargs.pop(key, None)
        pieces = _StrippedPieces(ctx.on_text) if ctx.on_text is not None else None
        if pieces is not None:
            kwargs["streamer"] = _text_streamer(tokenizer, pieces)
        records = self.runner(prompt, return_tensors=True, **kwargs)
        new_ids = list(records[0]["generated_token_ids"])[len(prompt_ids) :]
        ctx.usage.input_tokens += len(prompt_ids)
        ctx.usage.output_tokens += len(new_ids)
        if pieces is not None:
            return [{"generated_text": pieces.text()}]
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        return [{"generated_text": text.strip()}]


class _StrippedPieces:
    """Passes text pieces on so that, joined, they are the whole text stripped.

    Leading whitespace is dropped; whitespace at the end of a piece is held back until more
    text follows it (so trailing whitespace of the whole text is never sent).
    """

    def __init__(self, send: Callable[[str], None]) -> None:
        self.send = send
        self.sent: list[str] = []
        self.held = ""

    def __call__(self, piece: str) -> None:
        if not self.sent:
            piece = piece.lstrip()
        body = piece.rstrip()
        if not body:
            self.held += piece
            return
        out = self.held + body
        self.held = piece[len(body) :]
        self.sent.append(out)
        self.send(out)

    def text(self) -> str:
        """Everything sent so far, joined."""
        return "".join(self.sent)


def _text_streamer(tokenizer: Any, send: Callable[[str], None]) -> Any:
    """A ``TextStreamer`` that hands each decoded piece of new text to ``send``."""
    from transformers import TextStreamer

    class _Streamer(TextStreamer):  # type: ignore[misc]
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                send(text)

    return _Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


class _Seq2SeqGenerator:
    """Summarization / translation / text2text with an encoder-decoder model, no pipeline."""

    def __init__(self, task: str, folder: Path, options: dict[str, Any]) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        options = dict(options)
        options.pop("device", None)
        self.key = _seq2seq_key(task) or "generated_text"
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModelForSeq2SeqLM.from_pretrained(str(folder), **options).eval()
        params = getattr(self.model.config, "task_specific_params", None) or {}
        self.defaults = dict(params.get(task) or params.get(task.partition("_")[0]) or {})
        self.prefix = self.defaults.pop("prefix", "") or ""

    def __call__(self, text: str, kwargs: dict[str, Any], ctx: CallContext) -> list[dict]:
        import torch

        settings = {**self.defaults, **kwargs}
        cap = settings.get("max_new_tokens")
        if cap is not None:
            settings.pop("max_length", None)
            if settings.get("min_length", 0) > cap:
                settings["min_length"] = cap
        encoded = self.tokenizer(self.prefix + text, return_tensors="pt", truncation=True)
        with torch.inference_mode():
            output = self.model.generate(**encoded, **settings)
        new_ids = output[0].tolist()
        start = self.model.config.decoder_start_token_id
        if new_ids and new_ids[0] == start:
            new_ids = new_ids[1:]
        ctx.usage.input_tokens += int(encoded["input_ids"].shape[-1])
        ctx.usage.output_tokens += len(new_ids)
        return [{self.key: self.tokenizer.decode(new_ids, skip_special_tokens=True).strip()}]


def model_cache_dir() -> Path:
    """Where derived model files are kept: ``$ORCHESTRATOR_CACHE_DIR/models``."""
    return cache_dir() / "models"


def dequantized_gguf_folder(gguf_path: Path) -> Path:
    """A folder holding ``gguf_path`` as a float safetensors model + tokenizer, made once.

    The folder is written under a temporary name and renamed into place, so a crash never
    leaves a half-written cache; a concurrent writer that loses the race drops its copy.
    """
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}\0{stat.st_size}".encode()).hexdigest()[:20]
    target = model_cache_dir() / key
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    temp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        _write_dequantized(gguf_path, temp)
        try:
            temp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def _write_dequantized(gguf_path: Path, folder: Path) -> None:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(gguf_path.parent)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_path.name)
    extra: dict[str, Any] = {}
    gguf_config = getattr(transformers, "GgufConfig", None)
    if gguf_config is not None:  # transformers 5 keeps GGUF blocks packed unless told otherwise
        extra["quantization_config"] = gguf_config(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_path.name, **extra)
    # The weights are dense floats now; only the GGUF marker is left, and it blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    provenance = {"gguf": str(gguf_path), "bytes": gguf_path.stat().st_size}
    (folder / "orchestrator-source.json").write_text(json.dumps(provenance), encoding="utf-8")
    # mkdtemp makes a private folder: let workers running as another user read the cache.
    folder.chmod(0o755)
    for item in folder.iterdir():
        item.chmod(0o644)


def _remove_stale_temps(target: Path) -> None:
    """Delete temp folders that crashed writers left behind (older than an hour)."""
    for leftover in target.parent.glob(f".{target.name}-*"):
        try:
            if time.time() - leftover.stat().st_mtime > _STALE_TEMP_S:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue


def _pipeline_from_folder(task: str, folder: Path, options: dict[str, Any]) -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    options = dict(options)
    device = options.pop("device", "cpu")
    model = AutoModelForCausalLM.from_pretrained(str(folder), **options)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return pipeline(task, model=model, tokenizer=tokenizer, device=device)


def _construction_options(options: dict[str, Any]) -> dict[str, Any]:
    """Card options for construction: CPU by default, dtype names turned into torch dtypes."""
    result = dict(options)
    result.setdefault("device", "cpu")
    for key in ("dtype", "torch_dtype"):
        value = result.get(key)
        if isinstance(value, str) and value != "auto":
            import torch

            result[key] = getattr(torch, value)
    return result


def _seq2seq_key(task: str) -> str | None:
    if task == "text2text-generation":
        return "generated_text"
    return _SEQ2SEQ_KEYS.get(task.partition("_")[0])


def _with_token_cap(kwargs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    """``kwargs`` with ``max_new_tokens`` lowered to ``ctx.max_tokens`` when that is set."""
    if ctx.max_tokens is None:
        return kwargs
    current = kwargs.get("max_new_tokens")
    cap = ctx.max_tokens if current is None else min(int(current), ctx.max_tokens)
    return {**kwargs, "max_new_tokens": cap}


def _main_input(card: ToolCard) -> IOSpec:
    required = [io for io in card.inputs if not io.optional]
    return required[0] if required else card.inputs[0]


def _main_value(io: IOSpec, value: Any, runner: Any) -> Any:
    """What the pipeline gets: text as is, image path, WAV audio decoded (no ffmpeg needed)."""
    if io.type == "audio" and str(value).lower().endswith(".wav"):
        extractor = getattr(runner, "feature_extractor", None)
        return _read_wav(Path(value), getattr(extractor, "sampling_rate", None))
    if io.type in {"audio", "image"}:
        return str(value)
    return value


def _read_wav(path: Path, rate_wanted: int | None) -> dict[str, Any]:
    """Mono float samples in -1..1, linearly resampled to ``rate_wanted`` (no torchaudio)."""
    import numpy as np

    with wave.open(str(path), "rb") as reader:
        rate, width, channels = reader.getframerate(), reader.getsampwidth(), reader.getnchannels()
        frames = reader.readframes(reader.getnframes())
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(frames, dtype=dtype).astype(np.float32)
    if width == 1:
        samples = samples - 128.0
    samples /= float(2 ** (8 * width - 1))
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    if rate_wanted and rate_wanted != rate and len(samples):
        count = max(1, round(len(samples) * rate_wanted / rate))
        times = np.arange(count) * (rate / rate_wanted)
        samples = np.interp(times, np.arange(len(samples)), samples).astype(np.float32)
        rate = rate_wanted
    return {"raw": samples, "sampling_rate": rate}


def _outputs(card: ToolCard, result: Any, ctx: CallContext) -> dict[str, Any]:
    """Fill each card output from the pipeline result, by the output's type."""
    saved: dict[int, str] = {}

    def save(image: Any) -> str:
        if id(image) not in saved:
            saved[id(image)] = _save_png(image, ctx)
        return saved[id(image)]

    out: dict[str, Any] = {}
    for io in card.outputs:
        if io.type == "text":
            out[io.name] = _text_of(card, result)
        elif io.type == "json":
            out[io.name] = _json_safe(result, save)
        elif io.type == "image":
            images = _find(result, _is_image)
            if not images:
                raise ToolFailed(card.name, "the pipeline returned no image")
            out[io.name] = save(images[0])
        else:
            out[io.name] = _save_audio(card, result, ctx)
    return out


def _first_record(result: Any) -> Any:
    while isinstance(result, list | tuple) and result:
        result = result[0]
    return result


def _text_of(card: ToolCard, result: Any) -> str:
    record = _first_record(result)
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        for key in _TEXT_KEYS:
            if key in record:
                value = record[key]
                if isinstance(value, list) and value and isinstance(value[-1], dict):
                    value = value[-1].get("content", "")  # a chat: the last message
                return str(value).strip()
    raise ToolFailed(card.name, "the pipeline result has no text field", repr(record)[:300])


def _is_image(value: Any) -> bool:
    return hasattr(value, "save") and hasattr(value, "size") and hasattr(value, "mode")


def _find(value: Any, wanted: Callable[[Any], bool]) -> list[Any]:
    if wanted(value):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [found for item in value for found in _find(item, wanted)]
    return []


def _json_safe(value: Any, save_image: Callable[[Any], str]) -> Any:
    """Plain JSON values: numpy/torch numbers and arrays as lists, images as saved file paths."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v, save_image) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, save_image) for v in value]
    if _is_image(value):
        return save_image(value)
    if hasattr(value, "tolist"):  # numpy and torch scalars and arrays
        return _json_safe(value.tolist(), save_image)
    return str(value)


def _save_png(image: Any, ctx: CallContext) -> str:
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    path = ctx.scratch / f"image-{uuid.uuid4().hex}.png"
    image.save(path, format="PNG")
    return str(path)


def _save_audio(card: ToolCard, result: Any, ctx: CallContext) -> str:
    """Write a text-to-audio result (``audio`` array + ``sampling_rate``) as 16-bit WAV."""
    import numpy as np

    record = _first_record(result)
    if not isinstance(record, dict) or "audio" not in record:
        raise ToolFailed(card.name, "the pipeline returned no audio")
    samples = np.asarray(record["audio"], dtype=np.float32).squeeze()
    if samples.ndim > 1:
        samples = samples.mean(axis=0)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    path = ctx.scratch / f"audio-{uuid.uuid4().hex}.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(int(record.get("sampling_rate", 16000)))
        writer.writeframes(pcm.tobytes())
    return str(path)


def _spec(card: ToolCard) -> TransformersBackend:
    if not isinstance(card.backend, TransformersBackend):
        raise TypeError(f"card {card.name} is not a transformers card")
    return card.backend
