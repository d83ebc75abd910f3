"""The diffusers backend, with tiny random pipelines built into a temp folder.

Each pipeline is loaded the way a real card is: card YAML -> ``load_card`` -> ``load_tool``.
Fully offline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import diffusers
import pytest
import torch
import yaml
from PIL import Image

from orchestrator.cards import ToolCard, load_card
from orchestrator.cards.backend import CallContext, load_tool, unavailable_reason
from orchestrator.errors import UserError

CARDS = Path(__file__).resolve().parents[2] / "orchestrator" / "cards" / "builtin"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_card(folder: Path, name: str, inputs, backend) -> ToolCard:
    data = {
        "name": name,
        "task": "text-to-image",
        "description": f"tiny random test pipeline {name}",
        "inputs": inputs,
        "outputs": [{"name": "image", "type": "image"}],
        "backend": backend,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_card(path)


def tiny_text_to_image(folder: Path) -> Path:
    """A Stable-Diffusion-shaped pipeline: CLIP text encoder, conditional UNet, VAE, Euler."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

    words = "a cat dog red blue photo of".split()
    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", "<bos>", "<eos>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        model_max_length=8,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=8,
            projection_dim=16,
            bos_token_id=2,
            eos_token_id=3,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        cross_attention_dim=16,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=16,
    )
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def tiny_unconditional(folder: Path) -> Path:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=24,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10)).save_pretrained(folder)
    return folder


def test_text_to_image_writes_a_png_of_the_configured_size(tmp_path):
    folder = tiny_text_to_image(tmp_path / "sd")
    card = write_card(
        tmp_path,
        "tiny-sd",
        [{"name": "prompt", "type": "text"}],
        {
            "kind": "diffusers",
            "model": str(folder),
            "pipeline": "DiffusionPipeline",
            "call_options": {
                "num_inference_steps": 2,
                "guidance_scale": 0.0,
                "height": 32,
                "width": 16,
                "seed": 7,
            },
        },
    )
    assert unavailable_reason(card) is None
    tool = load_tool(card)
    scratch = tmp_path / "scratch"
    ctx = CallContext(scratch=scratch)
    first = tool({"prompt": "a red cat"}, ctx)["image"]
    assert Path(first).parent == scratch and first.endswith(".png")
    with Image.open(first) as image:
        assert image.format == "PNG" and image.size == (16, 32)
        red_cat = image.tobytes()
    again = tool({"prompt": "a red cat"}, ctx)["image"]
    assert again != first  # a new file each call
    with Image.open(again) as image:
        assert image.tobytes() == red_cat  # the seed makes it reproducible
    with Image.open(tool({"prompt": "a blue dog"}, ctx)["image"]) as image:
        assert image.tobytes() != red_cat  # the prompt reaches the model


def test_unconditional_pipeline_runs_without_a_prompt(tmp_path):
    folder = tiny_unconditional(tmp_path / "ddpm")
    card = write_card(
        tmp_path,
        "tiny-ddpm",
        [{"name": "prompt", "type": "text", "optional": True}],
        {
            "kind": "diffusers",
            "model": str(folder),
            "pipeline": "DDPMPipeline",
            "call_options": {"num_inference_steps": 2},
        },
    )
    out = load_tool(card)({}, CallContext(scratch=tmp_path / "scratch"))
    with Image.open(out["image"]) as image:
        assert image.format == "PNG" and image.size == (24, 24)
    assert [p.name for p in (tmp_path / "scratch").iterdir()] == [Path(out["image"]).name]


def test_unknown_pipeline_class_is_a_user_error(tmp_path):
    folder = tiny_unconditional(tmp_path / "ddpm")
    card = write_card(
        tmp_path,
        "bad-class",
        [{"name": "prompt", "type": "text"}],
        {"kind": "diffusers", "model": str(folder), "pipeline": "NoSuchPipeline"},
    )
    with pytest.raises(UserError, match="NoSuchPipeline"):
        load_tool(card)


def test_sd_turbo_card_without_cached_weights_says_how_to_get_them(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    reason = unavailable_reason(load_card(CARDS / "sd-turbo.yaml"))
    assert reason is not None
    assert "stabilityai/sd-turbo" in reason and "Hugging Face cache" in reason
    assert reason.count("orchestrator pull") == 1 and "orchestrator pull sd-turbo" in reason


def test_pipeline_folder_missing_a_component_is_unavailable(tmp_path):
    folder = tiny_unconditional(tmp_path / "ddpm")
    card = write_card(
        tmp_path,
        "broken",
        [{"name": "prompt", "type": "text"}],
        {"kind": "diffusers", "model": str(folder), "pipeline": "DDPMPipeline"},
    )
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.unlink()
    reason = unavailable_reason(card)
    assert reason is not None and str(folder) in reason and "no weight files in unet" in reason
    index = json.loads((folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DModel"]


def test_missing_local_folder_is_named(tmp_path):
    card = write_card(
        tmp_path,
        "gone",
        [{"name": "prompt", "type": "text"}],
        {"kind": "diffusers", "model": str(tmp_path / "gone-model")},
    )
    reason = unavailable_reason(card)
    assert reason is not None and str(tmp_path / "gone-model") in reason
