"""A card ships its own probes beside it: profiled on them, checked by `cards validate`."""

from __future__ import annotations

import json
import textwrap

from typer.testing import CliRunner

from orchestrator.cards.probes.aptitude import PLACEHOLDER
from orchestrator.cards.profile import profile_path
from orchestrator.cards.zoo import Zoo
from orchestrator.cli.main import app

CARD = """\
name: {name}
task: keyword-extraction
description: Picks the main keyword of a text (its most frequent long word).
inputs: [{{name: text, type: text}}]
outputs: [{{name: keyword, type: text}}]
backend: {{kind: python, entry: "{module}:load"}}
cost: {{latency_s: 0.01, load_s: 0.1, memory_mb: 64}}
"""

TOOLS = {
    "kw_main": """
        from collections import Counter

        def load(options):
            def tool(inputs, ctx):
                words = [w.strip(".,").lower() for w in inputs["text"].split()]
                return {"keyword": Counter(w for w in words if len(w) > 4).most_common(1)[0][0]}
            return tool
        """,
    "kw_echo": """
        def load(options):
            def tool(inputs, ctx):
                return {"keyword": inputs["text"]}
            return tool
        """,
}

PROBES = """\
task: keyword-extraction
probes:
  - instruction: what is the main keyword of this text
    cases:
      - input: {text: "The football match ended with a late football goal by the football captain."}
        expect: {label: football}
      - input: {text: "Mix the flour for the recipe, then bake the recipe as the recipe says."}
        expect: {label: recipe}
      - input: {text: "The river flooded the river bank after the river rose overnight."}
        expect: {label: river}
"""


def _card(folder, module, probes=PROBES):
    folder.mkdir(parents=True, exist_ok=True)
    name = module.replace("_", "-")
    (folder / f"{module}.py").write_text(textwrap.dedent(TOOLS.get(module, TOOLS["kw_main"])))
    card_file = folder / f"{module}.yaml"
    card_file.write_text(CARD.format(name=name, module=module))
    if probes is not None:
        (folder / f"{module}.probes.yaml").write_text(probes)
    return card_file


def test_a_card_of_a_custom_task_is_profiled_on_its_own_probes(tmp_path):
    cards = tmp_path / "cards"
    main, echo = _card(cards, "kw_main"), _card(cards, "kw_echo")
    assert {e.card.name for e in Zoo.load([cards], builtin=False)} == {"kw-main", "kw-echo"}
    result = CliRunner().invoke(app, ["profile", "kw-main", "kw-echo", "--cards", str(cards)])
    assert result.exit_code == 0, result.output
    good = json.loads(profile_path(main).read_text())
    bad = json.loads(profile_path(echo).read_text())
    assert good["mean_score"] == 1.0 and [p["instruction"] for p in good["probes"]] == [
        "what is the main keyword of this text"
    ]
    assert bad["mean_score"] == 0.0  # echoing the text is not an answer
    card = Zoo.load([cards]).get("kw-main").card
    assert card.profile is not None and card.profile.mean_score == 1.0
    # A changed test makes the profile stale: the card is unprofiled until profiled again.
    (cards / "kw_main.probes.yaml").write_text(PROBES.replace("main keyword", "key word"))
    assert Zoo.load([cards]).get("kw-main").card.profile is None


def test_a_custom_task_without_probes_says_how_to_ship_them(tmp_path):
    cards = tmp_path / "cards"
    _card(cards, "kw_main", probes=None)
    result = CliRunner().invoke(app, ["profile", "kw-main", "--cards", str(cards)])
    assert result.exit_code == 1
    assert "no aptitude test for task 'keyword-extraction'" in result.output
    assert "<card>.probes.yaml" in result.output


def _validate(folder):
    return CliRunner().invoke(app, ["cards", "validate", str(folder)])


def test_cards_validate_checks_a_cards_probes(tmp_path):
    good = tmp_path / "good"
    _card(good, "kw_main")
    assert _validate(good).exit_code == 0, _validate(good).output
    constant = PROBES.replace("label: recipe", "label: football").replace(
        "label: river", "label: football"
    )
    for name, probes, message in [
        ("constant", constant, "a tool that always gives the same answer passes it"),
        ("unknown", PROBES.replace("label:", "exact:"), "unknown check 'exact'"),
        ("task", PROBES.replace("task: keyword", "task: other"), "its task is 'other-extraction'"),
        ("input", PROBES.replace("{text:", "{speech:"), "the card has no audio input"),
    ]:
        folder = tmp_path / name
        _card(folder, "kw_main", probes)
        result = _validate(folder)
        assert result.exit_code != 0, (name, result.output)
        assert message in result.output, (name, result.output)
        assert "kw_main.probes.yaml" in result.output


def test_cards_new_drafts_a_probe_file_that_validate_wants_filled_in(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("---\npipeline_tag: text-classification\n---\n# A topic classifier\n")
    out = tmp_path / "cards" / "topic.yaml"
    out.parent.mkdir()
    args = ["cards", "new", "--from-readme", str(readme), "--model-id", "org/topic", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    drafted = out.with_name("topic.probes.yaml")
    assert drafted.is_file() and f"wrote {drafted}" in result.output
    assert "run after the built-in text-classification test" in drafted.read_text()
    checked = _validate(out.parent)
    assert checked.exit_code != 0 and f"replace every '{PLACEHOLDER}'" in checked.output
