"""The transformers backend, with tiny random models built into a temp folder.

Every model goes through the path a real card takes: a card YAML is written, validated with
``load_card`` and loaded with ``orchestrator.cards.backend.load_tool``. Fully offline.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import wave
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
import yaml

from orchestrator.cards import ToolCard, load_card
from orchestrator.cards.backend import CallContext, load_tool, unavailable_reason
from orchestrator.execution.backends._hub import missing_modules_reason
from orchestrator.execution.backends.transformers_pipeline import (
    dequantized_gguf_folder,
    model_cache_dir,
)

CARDS = Path(__file__).resolve().parents[2] / "orchestrator" / "cards" / "builtin"
WORDS = (
    "the a cat dog sat on mat what is capital of france paris hello world red blue green".split()
)
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% endif %}"
)


@pytest.fixture(autouse=True)
def one_thread():
    """Small models run faster on one thread, and 2-thread OpenMP crawls on a busy 2-core VM."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_card(folder: Path, name: str, inputs, outputs, backend) -> ToolCard:
    data = {
        "name": name,
        "task": backend.get("task", "text-generation"),
        "description": f"tiny random test model {name}",
        "inputs": inputs,
        "outputs": outputs,
        "backend": backend,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_card(path)


def word_tokenizer(specials: list[str], template: str | None = None, cls_sep: bool = False):
    """A whitespace word-level tokenizer built locally, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens([s for s in specials if s.startswith("<")])
    kwargs = {"unk_token": "<unk>", "pad_token": "<pad>", "eos_token": "<eos>"}
    if cls_sep:
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
        kwargs.update(cls_token="[CLS]", sep_token="[SEP]")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)
    if template:
        tokenizer.chat_template = template
    return tokenizer, vocab


def tiny_gpt2(folder: Path, template: str | None) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer, vocab = word_tokenizer(
        ["<unk>", "<pad>", "<eos>", "<user>", "<assistant>"], template
    )
    config = GPT2Config(
        vocab_size=len(vocab),
        n_embd=16,
        n_layer=1,
        n_head=2,
        n_positions=64,
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=1,
        initializer_range=0.5,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def reference_continuation(folder: Path, prompt_ids: list[int], n: int) -> str:
    """What greedy decoding of the saved model gives, computed without the backend."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor([prompt_ids])
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False
    )
    return tokenizer.decode(out[0][len(prompt_ids) :], skip_special_tokens=True).strip()


def test_text_generation_applies_chat_template_and_caps_tokens(tmp_path):
    folder = tiny_gpt2(tmp_path / "gpt2", CHAT_TEMPLATE)
    card = write_card(
        tmp_path,
        "tiny-chat",
        [{"name": "prompt", "type": "text"}, {"name": "system", "type": "text", "optional": True}],
        [{"name": "text", "type": "text"}],
        {
            "kind": "transformers",
            "task": "text-generation",
            "model": str(folder),
            "call_options": {"max_new_tokens": 50, "do_sample": False},
        },
    )
    assert unavailable_reason(card) is None
    tool = load_tool(card)
    ctx = CallContext(scratch=tmp_path / "scratch", max_tokens=5)
    out = tool({"prompt": "what is the capital of france"}, ctx)

    text = out["text"]
    assert isinstance(text, str)
    templated = tool.runner.tokenizer.apply_chat_template(
        [{"role": "user", "content": "what is the capital of france"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    prompt_ids = tool.runner.tokenizer(templated, add_special_tokens=False)["input_ids"]
    assert ctx.usage.input_tokens == len(prompt_ids) == 8  # <user>, 6 words, <assistant>
    assert 1 <= ctx.usage.output_tokens <= 5  # ctx.max_tokens beats the card's 50
    assert len(tool.runner.tokenizer(text)["input_ids"]) <= 5
    # Only the new text comes back, exactly what greedy decoding continues the prompt with.
    assert text == reference_continuation(folder, prompt_ids, 5)

    # An input named "system" becomes the system message of the chat.
    ctx = CallContext(scratch=tmp_path / "scratch", max_tokens=5)
    tool({"prompt": "what is the capital of france", "system": "hello world"}, ctx)
    with_system = tool.runner.tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "hello world"},
            {"role": "user", "content": "what is the capital of france"},
        ],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert "hello world" in with_system
    assert ctx.usage.input_tokens == len(
        tool.runner.tokenizer(with_system, add_special_tokens=False)["input_ids"]
    )


def test_text_generation_without_chat_template_counts_usage(tmp_path):
    folder = tiny_gpt2(tmp_path / "gpt2", None)
    card = write_card(
        tmp_path,
        "tiny-lm",
        [{"name": "prompt", "type": "text"}],
        [{"name": "text", "type": "text"}],
        {
            "kind": "transformers",
            "task": "text-generation",
            "model": str(folder),
            "call_options": {"max_new_tokens": 3, "min_new_tokens": 3, "do_sample": False},
        },
    )
    tool = load_tool(card)
    ctx = CallContext(scratch=tmp_path / "scratch")
    first = tool({"prompt": "the cat sat on"}, ctx)["text"]
    assert (ctx.usage.input_tokens, ctx.usage.output_tokens) == (4, 3)
    second = tool({"prompt": "the cat sat on"}, ctx)["text"]
    assert first == second  # greedy: deterministic
    assert (ctx.usage.input_tokens, ctx.usage.output_tokens) == (8, 6)  # accumulates
    assert first == reference_continuation(
        folder, [WORDS.index(w) + 5 for w in "the cat sat on".split()], 3
    )


def test_text_classification_returns_every_label_as_json(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer, vocab = word_tokenizer(["<unk>", "<pad>", "<eos>", "[CLS]", "[SEP]"], cls_sep=True)
    id2label = {0: "negative", 1: "neutral", 2: "positive"}
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=3,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    folder = tmp_path / "bert"
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    card = write_card(
        tmp_path,
        "tiny-classifier",
        [{"name": "text", "type": "text"}],
        [{"name": "label", "type": "text"}, {"name": "scores", "type": "json"}],
        {
            "kind": "transformers",
            "task": "text-classification",
            "model": str(folder),
            "call_options": {"top_k": None},
        },
    )
    tool = load_tool(card)
    out = tool({"text": "the cat sat on the mat"}, CallContext(scratch=tmp_path / "scratch"))

    scores = out["scores"]
    json.dumps(scores)  # plain JSON
    assert {s["label"] for s in scores} == set(id2label.values())
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-4)
    assert out["label"] == max(scores, key=lambda s: s["score"])["label"]


def test_summarization_runs_a_seq2seq_model_without_the_removed_pipeline(tmp_path):
    from transformers import BartConfig, BartForConditionalGeneration

    tokenizer, vocab = word_tokenizer(["<unk>", "<pad>", "<eos>", "<s>"])
    config = BartConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=3,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=None,
        task_specific_params={"summarization": {"num_beams": 2, "min_length": 4, "max_length": 30}},
    )
    folder = tmp_path / "bart"
    torch.manual_seed(0)
    BartForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    card = write_card(
        tmp_path,
        "tiny-summarizer",
        [{"name": "text", "type": "text"}],
        [{"name": "summary", "type": "text"}],
        {"kind": "transformers", "task": "summarization", "model": str(folder)},
    )
    tool = load_tool(card)
    ctx = CallContext(scratch=tmp_path / "scratch", max_tokens=6)
    out = tool({"text": "the cat sat on the mat and the dog sat on the cat"}, ctx)
    assert isinstance(out["summary"], str)
    assert ctx.usage.input_tokens == 13
    assert 1 <= ctx.usage.output_tokens <= 6


def test_image_captioning_card_runs_as_image_text_to_text(tmp_path):
    from PIL import Image
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    tokenizer, vocab = word_tokenizer(["<unk>", "<pad>", "<eos>", "[CLS]", "[SEP]"], cls_sep=True)
    tokenizer.bos_token = "[CLS]"
    config = BlipConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 16,
            "encoder_hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "bos_token_id": 3,
            "pad_token_id": 1,
            "sep_token_id": 4,
            "eos_token_id": 4,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    folder = tmp_path / "blip"
    BlipForConditionalGeneration(config).save_pretrained(folder)
    image_processor = BlipImageProcessorPil(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    card = write_card(
        tmp_path,
        "tiny-captioner",
        [{"name": "image", "type": "image"}],
        [{"name": "caption", "type": "text"}],
        {
            "kind": "transformers",
            "task": "image-to-text",
            "model": str(folder),
            "call_options": {"max_new_tokens": 4},
        },
    )
    picture = tmp_path / "red.png"
    Image.new("RGB", (40, 30), "red").save(picture)
    out = load_tool(card)({"image": str(picture)}, CallContext(scratch=tmp_path / "scratch"))
    assert isinstance(out["caption"], str)
    assert len(out["caption"].split()) <= 4


def write_wav(path: Path, rate: int, channels: int, seconds: float) -> Path:
    import numpy as np

    t = np.arange(int(rate * seconds)) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(np.repeat(tone, channels).tobytes())
    return path


def test_audio_input_is_decoded_and_resampled_without_ffmpeg(tmp_path):
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    id2label = {0: "speech", 1: "music"}
    config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        num_feat_extract_layers=2,
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=8,
        num_labels=2,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    folder = tmp_path / "w2v"
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    card = write_card(
        tmp_path,
        "tiny-audio-classifier",
        [{"name": "audio", "type": "audio"}],
        [{"name": "label", "type": "text"}, {"name": "scores", "type": "json"}],
        {
            "kind": "transformers",
            "task": "audio-classification",
            "model": str(folder),
            "call_options": {"top_k": None},
        },
    )
    tool = load_tool(card)
    # 22.05 kHz stereo, as a TTS voice writes it: the pipeline alone would need torchaudio.
    clip = write_wav(tmp_path / "tone.wav", 22050, 2, 0.5)
    out = tool({"audio": str(clip)}, CallContext(scratch=tmp_path / "scratch"))
    assert {s["label"] for s in out["scores"]} == {"speech", "music"}
    assert out["label"] in {"speech", "music"}


def test_audio_results_are_written_as_wav_under_scratch(tmp_path):
    import numpy as np

    from orchestrator.execution.backends.transformers_pipeline import _outputs

    card = ToolCard.model_validate(
        {
            "name": "speaker",
            "task": "text-to-audio",
            "description": "says a text out loud",
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [{"name": "audio", "type": "audio"}, {"name": "raw", "type": "json"}],
            "backend": {"kind": "transformers", "task": "text-to-audio", "model": "x/y"},
        }
    )
    samples = np.sin(np.arange(8000) / 5.0).astype(np.float32)[None, :]
    result = {"audio": samples, "sampling_rate": 8000}
    out = _outputs(card, result, CallContext(scratch=tmp_path / "scratch"))
    with wave.open(out["audio"]) as reader:
        assert (reader.getframerate(), reader.getnframes(), reader.getnchannels()) == (
            8000,
            8000,
            1,
        )
    assert Path(out["audio"]).parent == tmp_path / "scratch"
    assert out["raw"]["sampling_rate"] == 8000 and len(out["raw"]["audio"][0]) == 8000


def tiny_gguf(folder: Path) -> Path:
    """A 1-layer llama GGUF with a byte-level tokenizer and a chat template, some of it Q8_0."""
    import gguf
    import numpy as np

    folder.mkdir(parents=True)
    path = folder / "tiny.gguf"
    vocab, hidden, ffn = 64, 32, 64
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(hidden // 2)
    writer.add_vocab_size(vocab)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["<s>", "</s>", "<unk>", "\u0120"] + letters + ["\u0120" + c for c in letters]
    tokens += [f"x{i}" for i in range(vocab - len(tokens))]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 2] + [1] * (vocab - 3))
    writer.add_token_scores([0.0] * vocab)
    writer.add_token_merges(["\u0120 a"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_chat_template("{% for m in messages %}{{ m['content'] }} {% endfor %}")
    rng = np.random.default_rng(0)

    def dense(name: str, shape: tuple[int, ...]) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.5).astype(np.float32))

    dense("token_embd.weight", (vocab, hidden))
    for norm in ("blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "output_norm.weight"):
        writer.add_tensor(norm, np.ones(hidden, np.float32))
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        weight = (rng.standard_normal((hidden, hidden)) * 0.5).astype(np.float32)
        writer.add_tensor(f"blk.0.{name}.weight", gguf.quants.quantize(weight, q8), raw_dtype=q8)
    dense("blk.0.ffn_gate.weight", (ffn, hidden))
    dense("blk.0.ffn_up.weight", (ffn, hidden))
    dense("blk.0.ffn_down.weight", (hidden, ffn))
    dense("output.weight", (vocab, hidden))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_is_dequantized_once_into_an_atomic_cache(tmp_path, monkeypatch):
    import accelerate  # noqa: F401  (transformers needs it to read GGUF)
    import gguf  # noqa: F401

    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    gguf_path = tiny_gguf(tmp_path / "weights")
    card = write_card(
        tmp_path,
        "tiny-gguf",
        [{"name": "prompt", "type": "text"}],
        [{"name": "text", "type": "text"}],
        {
            "kind": "transformers",
            "task": "text-generation",
            "model": str(gguf_path.parent),
            "gguf_file": gguf_path.name,
            "call_options": {"do_sample": False},
        },
    )
    assert unavailable_reason(card) is None

    ctx = CallContext(scratch=tmp_path / "scratch", max_tokens=4)
    first = load_tool(card)({"prompt": "abc def"}, ctx)["text"]
    cache = model_cache_dir()
    assert cache == tmp_path / "cache" / "models"
    [folder] = list(cache.iterdir())  # one finished folder, no temp folder left
    assert not folder.name.startswith(".")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    written = (folder / "model.safetensors").stat().st_mtime_ns

    ctx2 = CallContext(scratch=tmp_path / "scratch", max_tokens=4)
    second = load_tool(card)({"prompt": "abc def"}, ctx2)["text"]
    assert (folder / "model.safetensors").stat().st_mtime_ns == written  # read, not rewritten
    assert first == second
    assert 1 <= ctx2.usage.output_tokens <= 4
    assert ctx2.usage.input_tokens == ctx.usage.input_tokens > 0

    # A crashed writer leaves only a hidden temp folder: never read, removed once old.
    shutil.rmtree(folder)
    stale = cache / f".{folder.name}-crashed"
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert dequantized_gguf_folder(gguf_path) == folder
    assert [p.name for p in cache.iterdir()] == [folder.name]


def test_hub_cards_without_cached_weights_say_how_to_get_them(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name, repo in [
        ("distilbart-cnn-summarizer", "sshleifer/distilbart-cnn-12-6"),
        ("opus-mt-fr-en", "Helsinki-NLP/opus-mt-fr-en"),
        ("blip-captioner", "Salesforce/blip-image-captioning-base"),
    ]:
        reason = unavailable_reason(load_card(CARDS / f"{name}.yaml"))
        assert reason is not None
        assert repo in reason
        assert "Hugging Face cache" in reason and str(tmp_path / "hub") in reason
        assert reason.count("orchestrator pull") == 1 and f"orchestrator pull {name}" in reason


def test_partly_cached_hub_model_is_unavailable(tmp_path, monkeypatch):
    """The real cache layout: refs/main -> snapshot; a config without weights is not enough."""
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    repo = hub / "models--sshleifer--distilbart-cnn-12-6"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (snapshot / "config.json").write_text("{}")
    card = load_card(CARDS / "distilbart-cnn-summarizer.yaml")
    reason = unavailable_reason(card)
    assert reason is not None and "only partly" in reason and "no weight files" in reason

    index = {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}
    (snapshot / "model.safetensors.index.json").write_text(json.dumps(index))
    (snapshot / "model-1.safetensors").write_bytes(b"x")
    (snapshot / "model-2.safetensors").symlink_to(repo / "blobs" / "never-arrived")
    reason = unavailable_reason(card)
    assert reason is not None and "1 of 2 shards" in reason

    (snapshot / "model-2.safetensors").unlink()
    (snapshot / "model-2.safetensors").write_bytes(b"x")
    assert unavailable_reason(card) is None


def test_missing_local_folder_is_named(tmp_path):
    missing = tmp_path / "no-such-model"
    card = write_card(
        tmp_path,
        "local-missing",
        [{"name": "prompt", "type": "text"}],
        [{"name": "text", "type": "text"}],
        {"kind": "transformers", "task": "text-generation", "model": str(missing)},
    )
    reason = unavailable_reason(card)
    assert reason is not None and str(missing) in reason and "does not exist" in reason
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_tool(card)


def test_missing_library_names_the_extra():
    reason = missing_modules_reason(["torch", "surely_not_installed_module_xyz"])
    assert reason is not None
    assert "surely_not_installed_module_xyz" in reason and "torch" not in reason.split(":")[1]
    assert "orchestrator[models]" in reason
    assert missing_modules_reason(["torch", "transformers"]) is None


@pytest.mark.slow  # loads the real SmolLM2 weights
def test_smollm2_card_answers_a_short_question(tmp_path):
    """The real bundled model. First load ever dequantizes it into the default cache
    (~/.cache/orchestrator/models, ~45-60 s on 2 cores); later loads take about a second."""
    card = load_card(CARDS / "smollm2-135m-chat.yaml")
    assert unavailable_reason(card) is None
    tool = load_tool(card)
    ctx = CallContext(scratch=tmp_path, max_tokens=16)
    answer = tool({"prompt": "What is the capital of France?"}, ctx)["text"]
    assert isinstance(answer, str) and answer.strip()
    assert 1 <= ctx.usage.output_tokens <= 16
    assert ctx.usage.input_tokens > 7  # the chat template wraps the 7-token question
    assert "paris" in answer.lower()
