"""Backend for diffusers pipelines (text-to-image and unconditional image generation).

``getattr(diffusers, spec.pipeline).from_pretrained(folder, **options)`` on the CPU. A call
passes the card's first text input as ``prompt`` and its first image input as ``image`` when
given, plus ``call_options`` (e.g. ``num_inference_steps``; ``seed`` becomes a seeded
``generator``). Every generated image is written as PNG under ``ctx.scratch``; the card's image
outputs take them in order.
"""

from __future__ import annotations

import uuid
from typing import Any

from orchestrator.cards import DiffusersBackend, ToolCard
from orchestrator.cards.backend import CallContext, Tool
from orchestrator.errors import ToolFailed, UserError
from orchestrator.execution.backends._hub import (
    hub_files,
    hub_repo,
    locate_model,
    missing_modules_reason,
)

__all__ = ["DiffusersPipelineBackend", "DiffusersTool"]


class DiffusersPipelineBackend:
    """Loads diffusers pipelines on the CPU from weights already on this machine."""

    spec = DiffusersBackend

    def unavailable_reason(self, card: ToolCard) -> str | None:
        """Missing libraries or weights; never loads a model nor touches the network."""
        reason = missing_modules_reason(["torch", "diffusers"])
        if reason:
            return reason
        return locate_model(_spec(card).model, "diffusers", card=card.name).reason

    def hub_repo(self, card: ToolCard) -> str | None:
        """The hub id ``orchestrator pull`` downloads for this card (None: not a hub model)."""
        return hub_repo(_spec(card).model)

    def hub_files(self, card: ToolCard, listing: list[str]) -> list[str]:
        """Which of the repo's files this card needs: model_index.json and its components."""
        return hub_files(listing, "diffusers")

    def load(self, card: ToolCard) -> Tool:
        """Build the pipeline named by the card from its local folder."""
        import diffusers

        spec = _spec(card)
        location = locate_model(spec.model, "diffusers")
        if location.folder is None:
            raise FileNotFoundError(f"card {card.name}: {location.reason}")
        pipeline_class = getattr(diffusers, spec.pipeline, None)
        if pipeline_class is None or not hasattr(pipeline_class, "from_pretrained"):
            raise UserError(
                f"card {card.name}: backend.pipeline '{spec.pipeline}' is not a diffusers "
                "pipeline class (e.g. DiffusionPipeline, StableDiffusionPipeline, DDPMPipeline)"
            )
        pipe = pipeline_class.from_pretrained(str(location.folder), **_options(spec.options))
        pipe = pipe.to("cpu")
        pipe.set_progress_bar_config(disable=True)
        return DiffusersTool(card, pipe, dict(spec.call_options))


class DiffusersTool:
    """A loaded diffusers pipeline, called with card inputs, returning PNG paths."""

    def __init__(self, card: ToolCard, pipe: Any, call_options: dict[str, Any]) -> None:
        """Wrap ``pipe`` for ``card``; ``call_options`` go to every call."""
        self.card = card
        self.pipe = pipe
        self.call_options = call_options

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Generate the image(s) and save them under ``ctx.scratch``."""
        kwargs = dict(self.call_options)
        seed = kwargs.pop("seed", None)
        if seed is not None:
            import torch

            kwargs["generator"] = torch.Generator("cpu").manual_seed(int(seed))
        prompt = self._first(inputs, "text")
        if prompt:
            kwargs["prompt"] = prompt
        image = self._first(inputs, "image")
        if image:
            from PIL import Image

            with Image.open(image) as opened:
                kwargs["image"] = opened.convert("RGB")
        images = list(self.pipe(**kwargs).images)
        outputs = [io for io in self.card.outputs if io.type == "image"]
        if len(images) < len(outputs):
            raise ToolFailed(
                self.card.name, f"pipeline made {len(images)} images, card wants {len(outputs)}"
            )
        ctx.scratch.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {}
        for io, picture in zip(outputs, images, strict=False):
            path = ctx.scratch / f"image-{uuid.uuid4().hex}.png"
            picture.save(path, format="PNG")
            result[io.name] = str(path)
        return result

    def _first(self, inputs: dict[str, Any], io_type: str) -> Any:
        for io in self.card.inputs:
            if io.type == io_type and inputs.get(io.name) not in (None, ""):
                return inputs[io.name]
        return None


def _options(options: dict[str, Any]) -> dict[str, Any]:
    """Construction options, with dtype names (``float32``) turned into torch dtypes."""
    result = dict(options)
    for key in ("torch_dtype", "dtype"):
        value = result.get(key)
        if isinstance(value, str) and value != "auto":
            import torch

            result[key] = getattr(torch, value)
    return result


def _spec(card: ToolCard) -> DiffusersBackend:
    if not isinstance(card.backend, DiffusersBackend):
        raise TypeError(f"card {card.name} is not a diffusers card")
    return card.backend
