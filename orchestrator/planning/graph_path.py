"""Zero-shot tool planning: the best path through the tool graph that explains the request.

With no worked examples, a plan comes from what the tool set itself says:

1. match - the request is split into clauses (quoted content left out: it is what a tool
   works on, not which tool); each clause is compared with each tool's document (its name in
   words and its description) by sentence embeddings when an embedder is given, plus TF-IDF.
   The name counts twice (the embedding of the document is averaged with that of the name
   alone): "train ticket booking" says what a tool does more precisely than "Booking a Train
   ticket for the user". A tool scores by how much better the clause fits it than the tools
   that look most like it (its family: booking, changing, cancelling), so a clause about
   cancelling does not bring in the whole family; and by how well the whole request fits it
   (a fragment such as "the check-in date is May 1" matches weather tools on its own);
2. path - a plan is a path along the tool graph's links (a tool feeds the next), whose tools
   share a domain when the tools name domains; each tool on the path is aligned to a clause,
   in the request's order: a tool explaining a clause another tool of the path already
   explains, or an earlier clause, gains less; of two tools on one clause, one that looks
   something up (its name says search, query, check ...) goes first: the request does not say
   the order, and a lookup feeds the step that acts; a tool whose description names another
   tool ("after file_write ...") comes after it: the description says what was done before;
3. score - the path with the largest total gain wins, each tool paying a fixed price (so a tool
   is added only when it explains part of the request), with a small bonus for tools many
   others follow in the graph (a search or a log-in that other steps need first).

A request of two or more clauses gets at least two tools when the graph allows it. The links
are the path's consecutive pairs. Nothing is fitted: the few constants below are the method.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from orchestrator.planning.tool_plan import split_request, terms
from orchestrator.planning.toolset import ToolPlan, ToolSet
from orchestrator.text import LexicalIndex

__all__ = ["GraphPathPlanner"]

Embed = Callable[[Sequence[str]], np.ndarray]

_CANDIDATES = 20  # tools considered per request (best matches first)
_MAX_TOOLS = 5
_TOOL_PRICE = 0.7  # a tool's gain (relative to the request's best match) must beat this
_SAME_CLAUSE = 0.3  # a second tool explaining the same clause gains this much less
_EARLIER_CLAUSE = 0.5  # a tool explaining a clause before the previous tool's
_FOLLOWED = 0.3  # bonus of the tool most others follow in the graph (log-scaled)
_IN_ORDER = 0.03  # a tool whose best clause comes after the previous tool's
_LEXICAL = 0.3  # weight of TF-IDF beside the embeddings
_CONTEXT = 0.6  # weight of the whole request's match beside a clause's (the request's topic)
_LOOK_ALIKES = 3  # a tool's family: its nearest tools by document (booking/changing/cancelling)
_DISTINCT = 0.25  # weight of a clause's margin over the tool's family (a quarter: a tie-breaker)
_LOOKUP_FIRST = 0.1  # a lookup before the tool that acts on the same clause (below a clause)
# Words of a tool name that say the tool looks something up rather than acts (plain English).
_LOOKUP = re.compile(
    r"\b(?:search|query|queries|inquiry|inquire|check|find|finding|look|lookup|view|get|"
    r"retrieval|retrieve|status|availability)\b"
)
# A tool named in prose: an identifier with an underscore (a one-word name is also a plain word).
_TOOL_NAME = re.compile(r"\b[^\W\d_]\w*_\w+\b")
_QUOTED = re.compile(r"[\"“]([^\"”]+)[\"”]|(?<!\w)'([^']+)'(?!\w)|`[^`]+`")


def instruction(clause: str) -> str:
    """The clause with quoted content replaced by a placeholder word."""
    plain = " ".join(_QUOTED.sub(" something ", clause).split())
    return plain or clause


@dataclass
class _Search:
    """One request's alignment matrix and the best path found so far."""

    gains: np.ndarray  # clauses x tools, relative to the best match
    best_clause: np.ndarray  # each tool's best clause
    candidates: set[int]
    min_tools: int
    best: tuple[float, list[int]] = field(default_factory=lambda: (-math.inf, []))


class GraphPathPlanner:
    """Plans over one tool set with no examples (see the module docstring)."""

    def __init__(self, tools: ToolSet, embed: Embed | None = None) -> None:
        self.tools = tools
        self.names = tools.names()
        self.embed = embed
        words = [n.replace("_", " ") for n in self.names]
        descriptions = [tools.get(n).description for n in self.names]  # type: ignore[union-attr]
        documents = [f"{w}: {d}" for w, d in zip(words, descriptions, strict=True)]
        self.lexical = LexicalIndex([terms(d) for d in documents])
        # The name counts twice: the document's vector averaged with the name's own.
        self.vectors = (embed(documents) + embed(words)) / 2 if embed is not None else None
        self.family = _families(self.vectors, self.lexical, documents)
        self.lookup = [float(bool(_LOOKUP.search(w))) for w in words]
        position = {n: i for i, n in enumerate(self.names)}
        graph = [(position[a], position[b]) for a, b in sorted(tools.links)
                 if a in position and b in position]  # fmt: skip
        n = len(self.names)
        if graph:
            self.successors: list[list[int]] = [[] for _ in range(n)]
            for a, b in graph:
                self.successors[a].append(b)
        else:  # no graph: any tool may follow any other
            self.successors = [[b for b in range(n) if b != a] for a in range(n)]
        # A description that names another tool says what was done before it ("after file_write,
        # delete the file"): the tool works on the named tool's result, so it never feeds it.
        for a, description in enumerate(descriptions):
            named = {position[m] for m in _TOOL_NAME.findall(description) if m in position}
            self.successors[a] = [b for b in self.successors[a] if b not in named]
        followed = Counter(a for a, _ in graph)
        most = max(followed.values(), default=0)
        self.prior = [
            _FOLLOWED * math.log1p(followed[i]) / math.log1p(most) if most else 0.0
            for i in range(n)
        ]
        self.domains = [frozenset(tools.get(name).domains) for name in self.names]  # type: ignore[union-attr]

    def similarities(self, clauses: list[str]) -> np.ndarray:
        """Clauses x tools: embedding cosine plus weighted TF-IDF cosine."""
        lexical = _lexical_matrix(self.lexical, clauses)
        if self.vectors is None or self.embed is None:
            return lexical
        return self.embed(clauses) @ self.vectors.T + _LEXICAL * lexical

    def matches(self, clauses: list[str], request: str) -> np.ndarray:
        """Clauses x tools: a clause's match, its margin over the family, the request's match."""
        sims = self.similarities([*clauses, request])
        sims, whole = sims[:-1], sims[-1]
        if self.family.size:
            family = sims[:, self.family].mean(axis=2)
            sims = sims + _DISTINCT * (sims - family)
        return sims + _CONTEXT * whole

    def plan(self, request: str) -> ToolPlan:
        clauses = [instruction(c) for c in split_request(request)]
        sims = self.matches(clauses, instruction(request))
        top = float(sims.max()) if sims.size else 0.0
        if top <= 0:
            return ToolPlan(request, [], [], "embedded", ["no tool matches the request"])
        gains = sims / top
        fit = gains.max(axis=0)
        order = sorted(range(len(self.names)), key=lambda i: (-fit[i], self.names[i]))
        search = _Search(
            gains=gains,
            best_clause=gains.argmax(axis=0),
            candidates=set(order[:_CANDIDATES]),
            min_tools=min(2, len(clauses)),
        )
        for start in order[:_CANDIDATES]:
            clause = int(search.best_clause[start])
            gain = gains[clause, start] - _TOOL_PRICE + self.prior[start]
            self._extend(search, [start], self.domains[start], clause, gain)
        path = search.best[1] or [order[0]]
        nodes = [self.names[i] for i in path]
        return ToolPlan(
            request=request,
            nodes=nodes,
            links=list(zip(nodes, nodes[1:], strict=False)),
            planner="embedded",
            notes=[f"{len(clauses)} clauses; zero-shot: a path of the tool graph"],
        )

    def _extend(
        self, search: _Search, path: list[int], domains: frozenset[str], last: int, score: float
    ) -> None:
        """Depth-first over the graph from ``path``; keeps the best-scoring path."""
        if len(path) >= search.min_tools and score > search.best[0]:
            search.best = (score, list(path))
        if len(path) >= _MAX_TOOLS:
            return
        previous = path[-1]
        for tool in self.successors[previous]:
            if tool not in search.candidates or tool in path:
                continue
            if domains and self.domains[tool]:
                shared = domains & self.domains[tool]
                if not shared:
                    continue  # the tools of one plan share a domain
            else:
                shared = domains or self.domains[tool]
            gain, clause = self._aligned(search.gains[:, tool], last)
            step = int(search.best_clause[tool]) - int(search.best_clause[previous])
            gain += _IN_ORDER * float(np.sign(step)) - _TOOL_PRICE + self.prior[tool]
            if clause <= last:  # no order in the request: a lookup goes before the acting tool
                gain += _LOOKUP_FIRST * (self.lookup[previous] - self.lookup[tool])
            path.append(tool)
            self._extend(search, path, shared, max(clause, last), score + gain)
            path.pop()

    @staticmethod
    def _aligned(column: np.ndarray, last: int) -> tuple[float, int]:
        """The best clause for a tool after one aligned to clause ``last``, and its gain."""
        best = (-math.inf, last)
        for clause, value in enumerate(column):
            gain = float(value)
            if clause == last:
                gain -= _SAME_CLAUSE
            elif clause < last:
                gain -= _EARLIER_CLAUSE
            if gain > best[0]:
                best = (gain, clause)
        return best


def _families(
    vectors: np.ndarray | None, lexical: LexicalIndex, documents: list[str]
) -> np.ndarray:
    """Each tool's ``_LOOK_ALIKES`` nearest tools by document (tools x family; empty: none)."""
    n = len(documents)
    k = min(_LOOK_ALIKES, n - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=int)
    if vectors is not None:
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        near = unit @ unit.T
    else:  # no embedder: TF-IDF cosine between the documents
        near = _lexical_matrix(lexical, documents)
    np.fill_diagonal(near, -np.inf)
    return np.argsort(-near, axis=1, kind="stable")[:, :k]


def _lexical_matrix(index: LexicalIndex, texts: list[str]) -> np.ndarray:
    """Texts x indexed documents: TF-IDF cosine."""
    matrix = np.zeros((len(texts), index.size))
    for row, text in enumerate(texts):
        matrix[row] = index.similarities(terms(text))
    return matrix
