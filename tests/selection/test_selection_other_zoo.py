"""The learned selection parts never rank a zoo worse than the plain embedding baseline.

The zoo here is of another style than the Hugging Face one the selector was shaped on:
UltraTool's everyday tools (order tracking, alarms, train tickets ...) from the shared data, with
the plan steps of its requests as queries. The selector's learned ranker earns its share on
this zoo's own probes (cross-validated); where it does not help, the embedding order ranks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.evals.selection import read_queries, read_zoo, run_selection_eval
from orchestrator.selection.learn import _baseline_weights, _earned_share

ULTRATOOL = Path(__file__).resolve().parents[3] / "shared" / "data" / "ultratool"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    cache = tmp_path_factory.mktemp("embeddings") / "embeddings.sqlite"
    return run_selection_eval(
        ULTRATOOL / "tool_desc.json", ULTRATOOL / "dev.jsonl", folds=5, cache_path=cache, limit=300
    )


def test_the_other_style_zoo_is_read_from_the_shared_data():
    records = read_zoo(ULTRATOOL / "tool_desc.json")
    assert len(records) == 260 and {"api_name", "domain", "description"} <= set(records[0])
    queries = read_queries(ULTRATOOL / "dev.jsonl")
    assert len(queries) > 1000
    first = queries[0]
    assert first.gold == "file_write" and "Call" not in first.instruction
    assert "file_write" not in first.instruction  # the tool's name is not in its query


def test_the_selector_is_not_below_the_embedding_baseline(result):
    assert result["n"] == 300
    base = result["embedding"]
    for metric in ("top1", "top5"):
        assert result[metric] >= base[metric], (metric, result, base)
    shares = {model["learned_share"] for model in result["learned"]}
    assert shares <= {0.0, 1.0}
    assert all(model["validation"] for model in result["learned"])


def test_the_share_goes_to_the_embedding_order_when_the_ranker_does_not_help():
    # Rows of 40 groups of 10 cards; the right card has the largest cosine ("dense"), and the
    # other features are noise that a ranker fitted on them cannot use on held-out groups.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    group = np.repeat(np.arange(40), 10)
    y = np.zeros(400)
    y[::10] = 1
    x[:, 3] = rng.uniform(0, 0.5, size=400)
    x[::10, 3] = 0.9
    share, figures = _earned_share(x, group, y)
    assert figures["0"]["top1"] == 1.0 and figures["0"]["top5"] == 1.0
    assert share == 0.0
    assert _baseline_weights()[3] > 0 and not _baseline_weights()[np.arange(6) != 3].any()
