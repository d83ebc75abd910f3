"""A learned multi-round router policy: which model to ask next, given the answers so far.

:class:`LearnedPolicy` follows a table learned from logged runs (``fit_cascade``): for each
*state* - the set of models that answered and which of their answers agree - it either asks one
more model (``start`` / ``ask_second`` / ``escalate``) or accepts one of the answers. The table
is solved by dynamic programming on the training records: the value of a state is the larger of
the best answer's measured accuracy there and, for each model not asked yet, the mean value of
the states its answer leads to minus ``cost_weight`` times its price (relative to the dearest
model). So the policy asks a second cheap model only where their agreement pays, escalates
where cheap answers disagree, and stops where an answer is already as good as it gets - all
learned from which answers were right, not hand-set.

Agreement needs comparable answers: :func:`answer_signature` is the router's ``answer_key``
(a choice letter, a short label) and, for code, a normalised form of the first function (names
of variables and of the function renamed, docstrings dropped), so that two models that wrote
the same function agree (with ``by_label`` a state names the answers themselves, which tells
apart models that lean to one label). States seen fewer than ``min_support`` times in training
are not expanded; a state the table does not know accepts the best-supported answer. Where the
table's choice cannot be followed in a run (the model does not fit the budget left, or failed),
the policy falls back as the docstring of :class:`LearnedPolicy` says, and the reason says so.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from orchestrator.routing.policy import (
    Answer,
    Decision,
    Option,
    StepView,
    answer_key,
    unwrap_response,
)
from orchestrator.utility import price_share, utility

__all__ = [
    "CascadeTable",
    "LearnedPolicy",
    "answer_signature",
    "fit_cascade",
    "frontier_models",
    "replay_table",
    "state_key",
]

_CODE = re.compile(
    r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```|\[PYTHON\](.*?)\[/PYTHON\]", re.S | re.I
)


def _code_signature(text: str) -> str | None:
    """The first function of a reply's code, names normalised, docstrings dropped; or None."""
    match = _CODE.search(text)
    source = next((g for g in match.groups() if g), "") if match else text
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return None
    function = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)), None)
    if function is None:
        return None
    # Names the function binds (its arguments, its variables) are renamed in order of
    # appearance; the names it only reads (builtins, modules) are kept.
    bound = {n.arg for n in ast.walk(function) if isinstance(n, ast.arg)}
    bound |= {
        n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    names: dict[str, str] = {}
    function.name = "f"
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and node.id in bound:
            node.id = names.setdefault(node.id, f"v{len(names)}")
        elif isinstance(node, ast.arg):
            node.arg = names.setdefault(node.arg, f"v{len(names)}")
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and len(node.body) > 1:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                node.body = node.body[1:]  # a docstring
    return "code:" + ast.dump(function, annotate_fields=False)


def answer_signature(text: str) -> str | None:
    """A comparable form of an answer: its choice or short label, else its code's function."""
    key = answer_key(text)
    if key is not None:
        return key
    return _code_signature(unwrap_response(text))


def state_key(answers: Sequence[tuple[str, str | None]], *, by_label: bool = False) -> str:
    """The state of answered (model, signature) pairs: sorted models and who agrees with whom.

    With ``by_label`` the state names each model's answer itself (a choice letter) rather than
    only which answers agree; that tells apart models that lean to one label.
    """
    ordered = sorted(answers, key=lambda a: a[0])
    if by_label:
        return "|".join(m for m, _ in ordered) + "=" + ",".join(k or "-" for _, k in ordered)
    labels: list[int] = []
    for j, (_, key) in enumerate(ordered):
        same = [i for i in range(j) if key is not None and ordered[i][1] == key]
        labels.append(same[0] if same else j)
    return "|".join(m for m, _ in ordered) + "#" + ",".join(map(str, labels))


@dataclass
class CascadeTable:
    """State -> action: ``["ask", model]`` or ``["accept", model]`` (JSON-ready)."""

    models: list[str]
    actions: dict[str, list[str]]
    accuracy: dict[str, float]  # each model's training accuracy (tie-breaks, unknown states)
    price: dict[str, float]  # each model's mean training cost, USD
    cost_weight: float
    value: float = 0.0  # expected (accuracy - cost term) in training
    by_label: bool = False  # states name the answers, not only their agreement

    def to_json(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "actions": self.actions,
            "accuracy": self.accuracy,
            "price": self.price,
            "cost_weight": self.cost_weight,
            "value": self.value,
            "by_label": self.by_label,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CascadeTable:
        return cls(**data)


def _patterns(keys: np.ndarray, asked: tuple[int, ...], base: int = 0) -> np.ndarray:
    """Per row, an integer code of which asked models' answers agree (-1 never agrees).

    With ``base`` (more than the largest signature id + 1) the code names the answers instead.
    """
    code = np.zeros(len(keys), dtype=np.int64)
    if base:
        for m in asked:
            code = code * base + keys[:, m] + 1
        return code
    for j, m in enumerate(asked):
        label = np.full(len(keys), j)
        for i in range(j - 1, -1, -1):
            same = (keys[:, asked[i]] == keys[:, m]) & (keys[:, m] >= 0)
            label = np.where(same, i, label)
        code = code * (len(asked) + 1) + label
    return code


@dataclass
class _Solver:
    keys: np.ndarray  # rows x models, signature ids (-1: not comparable)
    correct: np.ndarray  # rows x models, 0/1
    cost: np.ndarray  # rows x models, USD
    weight: float  # cost weight per USD
    depth: int
    min_support: int
    smooth: float
    by_label: bool = False
    allowed: frozenset[int] | None = None  # the models that may be asked (None: all)
    prior: np.ndarray = field(init=False)
    base: int = field(init=False)
    memo: dict[tuple[tuple[int, ...], int], tuple[float, tuple[str, int] | None]] = field(
        default_factory=dict
    )
    example: dict[tuple[tuple[int, ...], int], int] = field(default_factory=dict)  # a row

    def __post_init__(self) -> None:
        self.prior = self.correct.mean(axis=0)
        self.base = int(self.keys.max(initial=0)) + 2 if self.by_label else 0

    def accept(self, asked: tuple[int, ...], rows: np.ndarray) -> tuple[float, int]:
        n = len(rows)
        values = [
            (self.correct[rows, m].sum() + self.smooth * self.prior[m]) / (n + self.smooth)
            for m in asked
        ]
        best = int(np.argmax(values))
        return float(values[best]), asked[best]

    def solve(
        self, asked: tuple[int, ...], rows: np.ndarray, depth: int, code: int = 0
    ) -> tuple[float, tuple[str, int] | None]:
        key = (asked, code)
        if key in self.memo:
            return self.memo[key]
        best: tuple[float, tuple[str, int] | None] = (-np.inf, None)
        if asked:
            value, model = self.accept(asked, rows)
            best = (value, ("accept", model))
        if depth > 0 and (not asked or len(rows) >= self.min_support):
            for m in range(self.keys.shape[1]):
                if m in asked or (self.allowed is not None and m not in self.allowed):
                    continue
                after = tuple(sorted((*asked, m)))
                codes = _patterns(self.keys[rows], after, self.base)
                value = -self.weight * float(self.cost[rows, m].mean())
                for c in np.unique(codes):
                    sub = rows[codes == c]
                    value += len(sub) / len(rows) * self.solve(after, sub, depth - 1, int(c))[0]
                if value > best[0] + 1e-12:
                    best = (value, ("ask", m))
        self.memo[key] = best
        self.example[key] = int(rows[0])
        return best


def fit_cascade(
    models: Sequence[str],
    signatures: Sequence[Sequence[str | None]],
    correct: np.ndarray,
    cost: np.ndarray,
    *,
    cost_weight: float,
    depth: int = 3,
    min_support: int = 10,
    smooth: float = 3.0,
    by_label: bool = False,
    pareto: bool = False,
) -> CascadeTable:
    """Solve the routing table on training records.

    ``signatures[i][m]`` is model ``m``'s answer signature on row ``i``; ``correct`` and
    ``cost`` are rows x models arrays. ``cost_weight`` is in accuracy per dearest-model price.
    At most ``depth`` models are asked per query; ``by_label`` keys states by the answers
    themselves, not only by which of them agree (see :func:`state_key`). With ``pareto`` only
    the models on the training cost/accuracy frontier may be asked (no other model is both
    cheaper or as cheap and at least as accurate): fewer branches, less room to overfit.
    """
    order = sorted(range(len(models)), key=lambda m: models[m])  # states list models sorted
    models = [models[m] for m in order]
    vocab: dict[str, int] = {}
    keys = np.array(
        [
            [-1 if row[m] is None else vocab.setdefault(row[m], len(vocab)) for m in order]
            for row in signatures
        ],
        dtype=np.int64,
    ).reshape(len(signatures), len(models))
    correct = np.asarray(correct, dtype=float)[:, order]
    cost = np.asarray(cost, dtype=float)[:, order]
    price = cost.mean(axis=0)
    dearest = float(price.max()) or 1.0
    solver = _Solver(
        keys,
        correct,
        cost,
        cost_weight / dearest,
        depth,
        min_support,
        smooth,
        by_label,
        allowed=frontier_models(price, correct.mean(axis=0)) if pareto else None,
    )
    value, _ = solver.solve((), np.arange(len(keys)), depth)
    actions: dict[str, list[str]] = {}
    for state, (_, action) in solver.memo.items():
        if action is None:
            continue
        row = signatures[solver.example[state]]
        answers = [(models[m], row[order[m]]) for m in state[0]]
        actions[state_key(answers, by_label=by_label)] = [action[0], models[action[1]]]
    return CascadeTable(
        models=list(models),
        actions=actions,
        accuracy={m: float(a) for m, a in zip(models, solver.prior, strict=True)},
        price={m: float(p) for m, p in zip(models, price, strict=True)},
        cost_weight=cost_weight,
        value=float(value),
        by_label=by_label,
    )


def frontier_models(price: np.ndarray, accuracy: np.ndarray) -> frozenset[int]:
    """The models no other model dominates (as cheap or cheaper, as accurate or more, not equal)."""
    n = len(price)
    return frozenset(
        m
        for m in range(n)
        if not any(
            price[k] <= price[m]
            and accuracy[k] >= accuracy[m]
            and (price[k] < price[m] or accuracy[k] > accuracy[m])
            for k in range(n)
        )
    )


# ----------------------------------------------------------------------------- the policy


@dataclass
class LearnedPolicy:
    """Follows a :class:`CascadeTable` learned from logged runs (see the module docstring).

    Options are matched to the table's models by card name. Where the table's choice cannot be
    followed (the model does not fit the budget, failed, or is not a candidate), the policy
    accepts the best-supported answer it has, or asks the most accurate candidate that fits.
    """

    table: CascadeTable | dict[str, Any]
    name: str = "learned"

    def __post_init__(self) -> None:
        if isinstance(self.table, dict):
            self.table = CascadeTable.from_json(self.table)

    @property
    def _table(self) -> CascadeTable:
        assert isinstance(self.table, CascadeTable)
        return self.table

    def _state(self, view: StepView) -> tuple[str, list[Answer]]:
        ok = [a for a in view.ok_answers() if a.card in self._table.accuracy]
        answers = [(a.card, answer_signature(a.text)) for a in ok]
        return state_key(answers, by_label=self._table.by_label), ok

    def start(self, view: StepView) -> Decision:
        state, _ = self._state(view)
        action = self._table.actions.get(state)
        option = view.option(action[1]) if action and action[0] == "ask" else None
        if option is not None and option.fits:
            return Decision(
                "start",
                f"learned table (cost weight {self._table.cost_weight:g}): start with "
                f"{option.card} (train accuracy {self._accuracy(option.card):.3f}, "
                f"~${option.usd:.6f})",
                candidate=option.index,
                policy=self.name,
            )
        fallback = self._most_accurate(view, fitting=True) or self._most_accurate(view)
        assert fallback is not None  # a subtask always has candidates
        why = "the table's first model does not fit" if option else "no learned first model"
        return Decision(
            "start",
            f"{why}; starting with the most accurate candidate that fits, {fallback.card}",
            candidate=fallback.index,
            policy=self.name,
        )

    def decide(self, view: StepView) -> Decision:
        state, ok = self._state(view)
        action = self._table.actions.get(state) if ok else None
        last = view.answers[-1]
        if action and action[0] == "accept":
            chosen = next((a for a in ok if a.card == action[1]), None)
            if chosen is not None:
                return Decision(
                    "accept",
                    f"learned table: in state {state} {chosen.card}'s answer is the best bet "
                    f"(asking more is not worth its price at cost weight "
                    f"{self._table.cost_weight:g})",
                    use=chosen.seq,
                    policy=self.name,
                )
        if action and action[0] == "ask":
            option = view.option(action[1])
            if option is not None and option.fits and option.card not in view.asked():
                return self._ask(view, option, state, ok)
        if last.status != "ok":
            nxt = self._most_accurate(view, fitting=True, untried=True)
            if nxt is not None and not ok:
                return Decision(
                    "retry",
                    f"{last.card} {last.status}: {last.error}; retrying with {nxt.card}",
                    candidate=nxt.index,
                    policy=self.name,
                )
        if ok:
            best = self._best_supported(ok)
            why = "the table's next model cannot be asked" if action else "state not in the table"
            return Decision(
                "accept",
                f"{why} ({state}); accepting the best-supported answer, {best.card}'s",
                use=best.seq,
                policy=self.name,
            )
        if last.status == "over_budget":
            return Decision(
                "finish",
                f"{last.card} {last.status}: {last.error}; nothing else fits",
                policy=self.name,
            )
        return Decision(
            "give_up",
            f"{last.card} {last.status}: {last.error}; no candidate left",
            policy=self.name,
        )

    def _ask(self, view: StepView, option: Option, state: str, ok: list[Answer]) -> Decision:
        top = max((self._accuracy(a.card) for a in ok), default=0.0)
        action = "escalate" if self._accuracy(option.card) > top else "ask_second"
        answers = ", ".join(f"{a.card}: '{_short(a.text)}'" for a in ok) or "none usable"
        return Decision(
            action,
            f"learned table: in state {state} ({answers}) asking {option.card} "
            f"(train accuracy {self._accuracy(option.card):.3f}, ~${option.usd:.6f}) is worth "
            f"its price at cost weight {self._table.cost_weight:g}",
            candidate=option.index,
            policy=self.name,
        )

    def _accuracy(self, card: str) -> float:
        return self._table.accuracy.get(card, 0.0)

    def _most_accurate(
        self, view: StepView, *, fitting: bool = False, untried: bool = False
    ) -> Option | None:
        """The best candidate by the shared utility at the table's cost weight.

        Its quality is the table's train accuracy where the table knows the card, else the
        candidate's own (measured, or its discounted prior).
        """
        options = [
            o
            for o in view.options
            if (o.fits or not fitting) and not (untried and o.card in view.asked())
        ]
        dearest = max((o.usd for o in view.options), default=Decimal(0))

        def value(o: Option) -> float:
            quality = self._table.accuracy.get(o.card, o.quality)
            return utility(quality, price_share(o.usd, dearest), self._table.cost_weight)

        return max(options, key=lambda o: (value(o), -o.index), default=None)

    def _best_supported(self, ok: list[Answer]) -> Answer:
        support: dict[str, float] = {}
        keys = {a.seq: answer_signature(a.text) or f"#{a.seq}" for a in ok}
        for a in ok:
            support[keys[a.seq]] = support.get(keys[a.seq], 0.0) + self._accuracy(a.card)
        return max(ok, key=lambda a: (support[keys[a.seq]], self._accuracy(a.card)))


def _short(text: str, size: int = 12) -> str:
    key = answer_key(text)
    if key is not None:
        return key
    flat = " ".join(unwrap_response(text).split())
    return flat[:size] + ("..." if len(flat) > size else "")


def replay_table(
    table: CascadeTable,
    models: Sequence[str],
    signatures: Sequence[Sequence[str | None]],
    correct: np.ndarray,
    cost: np.ndarray,
) -> tuple[float, float]:
    """Mean cost and accuracy of following ``table`` on logged rows, without the graph.

    Used to choose the fitting options by cross-validation inside a training fold; it follows
    the same table as :class:`LearnedPolicy` (no budget); ``models`` names the columns.
    """
    index = {m: j for j, m in enumerate(models)}
    spent = right = 0.0
    for i, row in enumerate(signatures):
        asked: list[tuple[str, str | None]] = []
        while True:
            action = table.actions.get(state_key(asked, by_label=table.by_label))
            if action is None or (action[0] == "ask" and action[1] in dict(asked)):
                action = ["accept", _supported(asked, table.accuracy)] if asked else None
            if action is None:
                break
            if action[0] == "accept":
                right += float(correct[i, index[action[1]]])
                break
            j = index[action[1]]
            spent += float(cost[i, j])
            asked.append((action[1], row[j]))
    n = max(len(signatures), 1)
    return spent / n, right / n


def _supported(asked: list[tuple[str, str | None]], accuracy: dict[str, float]) -> str:
    support: dict[str, float] = {}
    for m, key in asked:
        support[key or f"#{m}"] = support.get(key or f"#{m}", 0.0) + accuracy.get(m, 0.0)
    return max(
        (m for m, _ in asked),
        key=lambda m: (support[dict(asked)[m] or f"#{m}"], accuracy.get(m, 0.0)),
    )
