"""Tool-level planning with no LLM: which tools a request needs, in which order, linked how.

Three signals, each learned the same way from any tool set and its worked examples:

1. clause match - the request is split into clauses; each clause is compared (TF-IDF cosine)
   with each tool's document: its name, description and the step texts of examples that used it;
2. neighbours - the most similar solved requests vote for the tools they used, weighted by
   similarity, and for how many tools the plan has;
3. order - the chosen tools are ordered by the permutation that best fits the tool graph, the
   transitions seen in the examples and where in the request each tool was matched.

Links: a tool reads from the latest earlier tool whose output type it takes; with no types
known, the steps form a chain (each step feeds the next).

With no examples at all (zero-shot), a plan is the best path of the tool graph that explains the
request: see ``orchestrator.planning.graph_path``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import TYPE_CHECKING

from orchestrator.planning.toolset import Example, ToolPlan, ToolSet
from orchestrator.text import LexicalIndex, tokens

if TYPE_CHECKING:
    from orchestrator.planning.graph_path import Embed, GraphPathPlanner

__all__ = ["SparseIndex", "ToolSetModel", "terms"]

_MAX_ORDERED = 6  # permutations are tried up to this many tools; longer plans keep match order


class SparseIndex:
    """A :class:`LexicalIndex` answering with only the documents that share a term with a query."""

    def __init__(self, documents: Sequence[Sequence[str]]) -> None:
        self.index = LexicalIndex(documents)

    def similarities(self, terms: Sequence[str]) -> dict[int, float]:
        """TF-IDF cosine of the query to each document sharing a term with it."""
        return self.index.shared(terms)


def terms(text: str) -> list[str]:
    """Word stems plus adjacent-stem pairs (pairs tell 'ticket booking' from 'ticket query')."""
    words = tokens(text.replace("_", " "))
    return words + [f"{a}~{b}" for a, b in zip(words, words[1:], strict=False)]


def split_request(request: str) -> list[str]:
    """Clauses of a request, by the embedded planner's splitter."""
    from orchestrator.planning.embedded import split_clauses

    return split_clauses(request) or [request]


@dataclass
class _Scored:
    name: str
    score: float
    position: float  # where in the request the tool matched best (clause index)


class ToolSetModel:
    """What the embedded planner learns from a tool set; plans requests over it."""

    def __init__(
        self,
        tools: ToolSet,
        *,
        neighbours: int = 20,
        clause_weight: float = 1.0,
        vote_weight: float = 0.5,
        position_weight: float = 2.0,
        precedence_weight: float = 0.5,
        count_bias: float = 0.1,
        embed: Embed | None = None,
    ) -> None:
        self.tools = tools
        self.embed = embed  # sentence embeddings for planning with no examples
        self._graph_planner: GraphPathPlanner | None = None
        self.neighbours = neighbours
        self.clause_weight = clause_weight
        self.vote_weight = vote_weight
        self.position_weight = position_weight
        self.precedence_weight = precedence_weight
        self.count_bias = count_bias
        names = tools.names()
        self._names = names
        steps: dict[str, list[str]] = defaultdict(list)
        for example in tools.examples:
            for name, step in zip(example.tools, example.steps, strict=False):
                steps[name].append(step)
        self._tool_index = LexicalIndex(
            [
                terms(f"{n} {tools.get(n).description} " + " ".join(steps[n]))  # type: ignore[union-attr]
                for n in names
            ]
        )
        self._examples = [e for e in tools.examples if e.tools]
        self._request_index = LexicalIndex([terms(e.request) for e in self._examples])
        self._transitions: Counter[tuple[str, str]] = Counter()
        self._starts: Counter[str] = Counter()
        self._uses: Counter[str] = Counter()
        self._before: Counter[tuple[str, str]] = Counter()
        for example in self._examples:
            self._starts[example.tools[0]] += 1
            self._uses.update(example.tools)
            self._transitions.update(zip(example.tools, example.tools[1:], strict=False))
            for i, a in enumerate(example.tools):
                for b in example.tools[i + 1 :]:
                    self._before[(a, b)] += 1

    # -- choosing tools ---------------------------------------------------------------------

    def plan(self, request: str) -> ToolPlan:
        clauses = split_request(request)
        if not self._examples:
            return self._zero_shot().plan(request)
        scored = self._score(request, clauses)
        count = self._count(request, clauses)
        chosen = self._one_domain(sorted(scored, key=lambda s: (-s.score, s.name)), count)
        chosen = [c for c in chosen if c.score > 0] or chosen[:1]
        ordered = self._order(self._placed(chosen, clauses))
        return ToolPlan(
            request=request,
            nodes=ordered,
            links=self._links(ordered),
            planner="embedded",
            notes=[f"{len(clauses)} clauses; {count} tools expected"],
        )

    def _placed(self, chosen: list[_Scored], clauses: list[str]) -> list[_Scored]:
        """Each chosen tool at the first clause it fits best of the chosen tools.

        "Cancel the alarm, then adjust the daily one": both alarm tools match both clauses,
        but the first clause fits the cancelling tool better than the changing one.
        """
        if len(chosen) < 2 or len(clauses) < 2:
            return chosen
        index = {n: i for i, n in enumerate(self._names)}
        first: dict[str, float] = {}
        for position, clause in enumerate(clauses):
            sims = self._tool_index.shared(terms(clause))
            best = max(chosen, key=lambda c: (sims.get(index[c.name], 0.0), -c.score))
            if sims.get(index[best.name], 0.0) > 0:
                first.setdefault(best.name, float(position))
        return [_Scored(c.name, c.score, first.get(c.name, c.position)) for c in chosen]

    def _one_domain(self, ranked: list[_Scored], count: int) -> list[_Scored]:
        """The best ``count`` tools that share a domain (tools naming none fit any).

        The domain is the one whose best ``count`` tools score highest in total.
        """
        domains = sorted({d for s in ranked for d in self._domains(s.name)})
        if not domains:
            return ranked[:count]

        def fitting(domain: str) -> list[_Scored]:
            return [s for s in ranked if domain in (self._domains(s.name) or (domain,))][:count]

        best = max(domains, key=lambda d: (sum(s.score for s in fitting(d)), d))
        return fitting(best)

    def _domains(self, name: str) -> tuple[str, ...]:
        tool = self.tools.get(name)
        return tool.domains if tool is not None else ()

    def _zero_shot(self) -> GraphPathPlanner:
        """The planner for a tool set with no examples (built on first use)."""
        from orchestrator.planning.graph_path import GraphPathPlanner

        if self._graph_planner is None:
            self._graph_planner = GraphPathPlanner(self.tools, self.embed)
        return self._graph_planner

    def _neighbours(self, request: str) -> list[tuple[Example, float]]:
        if not self._examples:
            return []
        sims = self._request_index.shared(terms(request))
        best = sorted(sims.items(), key=lambda kv: (-kv[1], kv[0]))[: self.neighbours]
        return [(self._examples[i], s) for i, s in best if s > 0]

    def _score(self, request: str, clauses: list[str]) -> list[_Scored]:
        clause_best: dict[str, tuple[float, float]] = {}
        for position, clause in enumerate(clauses):
            for i, sim in self._tool_index.shared(terms(clause)).items():
                name = self._names[i]
                if sim > clause_best.get(name, (0.0, 0.0))[0]:
                    clause_best[name] = (sim, float(position))
        whole = self._tool_index.shared(terms(request))
        votes: dict[str, float] = defaultdict(float)
        neighbours = self._neighbours(request)
        total = sum(s * s for _, s in neighbours) or 1.0
        for example, sim in neighbours:
            for name in set(example.tools):
                votes[name] += sim * sim / total
        scored = []
        for i, name in enumerate(self._names):
            clause_sim, position = clause_best.get(name, (0.0, math.inf))
            match = max(clause_sim, whole.get(i, 0.0))
            score = self.clause_weight * match + self.vote_weight * votes.get(name, 0.0)
            if score > 0:
                scored.append(_Scored(name, score, position))
        return scored

    def _count(self, request: str, clauses: list[str]) -> int:
        neighbours = self._neighbours(request)
        if not neighbours:
            return max(1, len(clauses))
        weights = [s * s for _, s in neighbours]
        mean = sum(w * len(set(e.tools)) for (e, _), w in zip(neighbours, weights, strict=True))
        # Rounded a little up: a missing tool costs a plan more than one too many.
        return max(1, math.floor(mean / sum(weights) + 0.5 + self.count_bias))

    # -- ordering and linking ---------------------------------------------------------------

    def _order(self, chosen: list[_Scored]) -> list[str]:
        if len(chosen) > _MAX_ORDERED:
            return [c.name for c in sorted(chosen, key=lambda c: (c.position, c.name))]
        best: tuple[float, tuple[str, ...]] | None = None
        for perm in permutations(sorted(chosen, key=lambda c: c.name)):
            score = self._order_score(perm)
            key = (score, tuple(c.name for c in perm))
            if best is None or score > best[0]:
                best = key
        assert best is not None
        return list(best[1])

    def _order_score(self, perm: tuple[_Scored, ...]) -> float:
        names = [c.name for c in perm]
        score = math.log((self._starts[names[0]] + 0.5) / (self._uses[names[0]] + 1.0))
        for a, b in zip(names, names[1:], strict=False):
            seen = self._transitions[(a, b)]
            in_graph = (a, b) in self.tools.links
            score += math.log((seen + (1.0 if in_graph else 0.05)) / (self._uses[a] + 1.0))
        for i, a in enumerate(perm):
            for b in perm[i + 1 :]:
                # How often a came before b in the examples, and where each matched the request.
                ab, ba = self._before[(a.name, b.name)], self._before[(b.name, a.name)]
                score += self.precedence_weight * math.log((ab + 0.5) / (ab + ba + 1.0))
                if a.position < b.position < math.inf:
                    score += self.position_weight
        return score

    def _links(self, ordered: list[str]) -> list[tuple[str, str]]:
        typed = [self.tools.get(n) for n in ordered]
        if all(t is not None and (t.inputs or t.outputs) for t in typed):
            links = []
            for j, target in enumerate(typed):
                for io_type in target.inputs:  # type: ignore[union-attr]
                    producers = [
                        i
                        for i in range(j)
                        if io_type in typed[i].outputs  # type: ignore[union-attr]
                    ]
                    if producers:
                        link = (ordered[producers[-1]], ordered[j])
                        if link not in links:
                            links.append(link)
            return links
        return list(zip(ordered, ordered[1:], strict=False))
