"""Trivial tools cannot pass an aptitude test: every task's probes score them near 0.

For every task with a built-in test, four python cards (written into a tmp folder, profiled in
the real sandboxed workers, with the built-in speaker, listener and image classifier as the
tests' helpers) each answer trivially: the input echoed back, one constant answer, an empty
answer, and a random answer from the test's own vocabulary of references.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from orchestrator.cards.probes.aptitude import INPUT_KINDS, PROBES_DIR, load_probes
from orchestrator.cards.probes.checks import DISCRETE
from orchestrator.cards.zoo import Zoo
from orchestrator.execution.pool import WorkerPoolExecutor
from orchestrator.execution.profiling import profile_card

TOOLS = ("identity", "constant", "empty", "random")
NEAR_ZERO = 0.1
TASKS = sorted(p.stem for p in PROBES_DIR.glob("*.yaml"))
OUTPUT = {  # what a tool of each task answers with
    "automatic-speech-recognition": "text",
    "feature-extraction": "json",
    "image-classification": "text",
    "image-to-text": "text",
    "object-detection": "json",
    "summarization": "text",
    "text-classification": "text",
    "text-generation": "text",
    "text-to-image": "image",
    "text-to-speech": "audio",
    "translation": "text",
}

MODULE = """
import hashlib
import os
import random
import wave

from PIL import Image


GENERIC = %r


def _rng(value):
    # Seeded by the input: a file's content, not its temporary path.
    data = str(value).encode()
    if isinstance(value, str) and os.path.isfile(value):
        with open(value, "rb") as handle:
            data = handle.read()
    return random.Random(hashlib.sha256(data).hexdigest())


def _wav(path, rng):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(rng.randrange(256) for _ in range(32000)))
    return str(path)


def _png(path, rng):
    image = Image.new("RGB", (64, 64))
    image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(64 * 64)])
    image.save(path)
    return str(path)


def _answer(mode, kind, value, vocab, scratch):
    rng = _rng(value)
    if mode == "identity":
        return value
    if mode == "empty":
        return [] if kind == "json" else ""
    if kind == "audio":
        return _wav(scratch / f"{mode}-{rng.random()}.wav", rng if mode == "random" else _rng(0))
    if kind == "image":
        return _png(scratch / f"{mode}-{rng.random()}.png", rng if mode == "random" else _rng(0))
    if kind == "json" and vocab == ["<vector>"]:
        source = rng if mode == "random" else _rng(0)
        return [source.uniform(-1, 1) for _ in range(16)]
    if kind == "json":
        boxes = rng.randrange(3) if mode == "random" else 1
        return [{"box": [0, 0, 10, 10], "score": 1.0} for _ in range(boxes)]
    if mode == "constant":
        return vocab[0]
    if kind == "text" and vocab == GENERIC:
        return " ".join(rng.choice(vocab) for _ in range(8))
    return rng.choice(vocab)


def load(options):
    def tool(inputs, ctx):
        value = next(iter(inputs.values()))
        kind = options["kind"]
        return {"out": _answer(options["mode"], kind, value, options["vocab"], ctx.scratch)}

    return tool
"""


# Words a tool that knows nothing of the test says (its references are not leaked into it).
GENERIC = ["time", "people", "year", "way", "day", "thing", "world", "life", "hand", "part"]


def _vocabulary(task: str) -> list[str]:
    """What a random guesser guesses from: the test's labels (or words for a graded test)."""
    if task == "feature-extraction":
        return ["<vector>"]
    labels: list[str] = []
    for probe in load_probes(task):
        for case in probe.all_cases():
            if case.kind in DISCRETE:
                ref = case.reference
                labels += [str(w) for w in (ref if isinstance(ref, list) else [ref])]
    return sorted(set(labels)) or GENERIC


def _card_yaml(task: str, mode: str) -> str:
    probe = load_probes(task)[0]
    input_type = "text" if probe.pairs else INPUT_KINDS[next(iter(probe.all_cases()[0].input))]
    options = {"mode": mode, "kind": OUTPUT[task], "vocab": _vocabulary(task)}
    return textwrap.dedent(
        f"""\
        name: {mode}-{task}
        task: {task}
        description: A trivial tool that answers {mode} for the {task} test.
        inputs: [{{name: x, type: {input_type}}}]
        outputs: [{{name: out, type: {OUTPUT[task]}}}]
        backend: {{kind: python, entry: "trivial_tools:load", options: {json.dumps(options)}}}
        cost: {{latency_s: 0.01, load_s: 0.5, memory_mb: 128}}
        """
    )


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Profile every trivial tool of every task once: {(task, tool): (mean score, errors)}."""
    folder = tmp_path_factory.mktemp("trivial-cards")
    (folder / "trivial_tools.py").write_text(textwrap.dedent(MODULE) % (GENERIC,))
    for task in TASKS:
        for mode in TOOLS:
            (folder / f"{mode}-{task}.yaml").write_text(_card_yaml(task, mode))
    zoo = Zoo.load([folder])
    helpers = Zoo.load()
    scores = {}
    with WorkerPoolExecutor(extra_sys_path=[str(folder)]) as executor:
        for task in TASKS:
            for mode in TOOLS:
                record = profile_card(
                    zoo.get(f"{mode}-{task}").card, executor=executor, helpers=helpers
                )
                scores[(task, mode)] = record["mean_score"]
    print("\ntrivial-tool profile (task x tool: mean score)")
    for task in TASKS:
        row = "  ".join(f"{mode} {scores[(task, mode)]:.3f}" for mode in TOOLS)
        print(f"  {task:<30} {row}")
    return scores


@pytest.mark.parametrize("task", TASKS)
def test_trivial_tools_score_near_zero_on_every_task(table, task):
    for mode in TOOLS:
        assert table[(task, mode)] <= NEAR_ZERO, (task, mode, table[(task, mode)])


def test_every_builtin_task_is_covered():
    assert set(TASKS) == set(OUTPUT)
