"""The LLM planner: any OpenAI-compatible chat endpoint writes the plan; nothing bad gets through.

For each request:

1. a prompt with the tools the plan may use and a few worked examples nearest to the request
   (TF-IDF), and ``response_format`` = the JSON schema of the pydantic plan model;
2. the answer is parsed leniently (a code fence, text around the JSON, HuggingGPT's list form)
   and then validated strictly against the zoo or tool set: unknown tools, cycles, references to
   unknown steps, files not named in the request;
3. an invalid plan gets one repair round: the error goes back to the model;
4. if that fails too, or the endpoint cannot be reached (after the retries of
   :mod:`orchestrator.llm`), the embedded planner plans the request.

Inside a run each call is paid from the run's budget (:mod:`orchestrator.metered_llm`): its
expected cost (``usd_per_call`` + ``usd_per_1k_tokens`` x an upper bound of its tokens, one
call, its timeout) is reserved before it and settled after it; planning may take at most half
the seconds left, each call is cut at what remains of that (a server that never answers cannot
hold the run), and a call that does not fit goes to the embedded planner instead.

Every step of that path is written into the plan's ``notes`` (and so into the run's trace):
``valid:``, ``invalid:``, ``repaired:``, ``fallback:``, ``retry:``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.budget import usd_text
from orchestrator.cards.zoo import Zoo
from orchestrator.config import env_llm_base_url
from orchestrator.errors import BudgetExceeded, ChatEndpointError, ConfigError, PlanError, UserError
from orchestrator.llm import LOCAL_KEY, LlmClient
from orchestrator.metered_llm import PaidReply, active_meter
from orchestrator.plan import FileArg, Plan, plan_json_schema
from orchestrator.planning.tool_plan import SparseIndex, terms
from orchestrator.planning.toolset import Example, ToolPlan, ToolSet, check_tool_plan
from orchestrator.planning.validate import validate_plan

__all__ = ["LlmPlanner", "ToolPlanDraft", "check_named_files", "extract_json"]

T = TypeVar("T")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_SHORTLIST = 12  # tools shown per request when a tool set is large
_MIN_CALL_S = 0.2  # a call given fewer seconds than this within the budget is not made


class _Link(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    target: str


class ToolPlanDraft(BaseModel):
    """What the model writes when planning over a tool set by name."""

    model_config = ConfigDict(extra="forbid")

    nodes: list[str] = Field(min_length=1, description="tool names, in the order they run")
    links: list[_Link] = Field(
        default_factory=list, description="source's output feeds target's input"
    )


class _EndpointFailed(Exception):
    """The endpoint could not be reached or answered with an error (after retries)."""


def extract_json(text: str) -> Any:
    """The first JSON value in a model's answer (inside a code fence, or after some prose)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start in [i for i, ch in enumerate(candidate) if ch in "{["][:20]:
            try:
                value, _ = decoder.raw_decode(candidate[start:])
            except json.JSONDecodeError:
                continue
            return value
    raise PlanError("the answer holds no complete JSON value; answer with the JSON plan only")


def check_named_files(plan: Plan, files: Sequence[Path] = ()) -> None:
    """Raise PlanError when a step reads a file the request neither names nor attaches."""
    named = {str(p) for p in files} | {p.name for p in files}
    for subtask in plan.subtasks:
        for arg in subtask.args.values():
            if isinstance(arg, FileArg) and arg.path not in plan.request and arg.path not in named:
                raise PlanError(
                    f"step {subtask.id} reads file '{arg.path}', which the request does not "
                    "name; use only files named in the request"
                )


class LlmPlanner:
    """Plans with an LLM behind an OpenAI-compatible endpoint, validated, with a fallback."""

    name = "llm"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str = "smollm2-135m-chat",
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        max_tokens: int = 400,
        examples: int = 3,
        retries: int = 3,
        temperature: float = 0.0,
        fallback: Any = None,
        usd_per_call: Decimal | str = Decimal(0),
        usd_per_1k_tokens: Decimal | str = Decimal(0),
    ) -> None:
        base_url = base_url or env_llm_base_url()
        if not base_url:
            raise ConfigError(
                "the llm planner needs an endpoint: set [llm] base_url in the config or "
                "$ORCHESTRATOR_LLM_BASE_URL (e.g. http://127.0.0.1:8000/v1)"
            )
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.examples = examples
        self.retries = retries
        key = api_key or os.environ.get(api_key_env) or LOCAL_KEY
        self.llm = LlmClient(base_url, model, key, timeout_s=timeout_s, attempts=max(1, retries))
        self.temperature = temperature
        self.usd_per_call = Decimal(usd_per_call)
        self.usd_per_1k_tokens = Decimal(usd_per_1k_tokens)
        if fallback is None:
            from orchestrator.planning.embedded import EmbeddedPlanner

            fallback = EmbeddedPlanner()
        self.fallback = fallback
        self._example_index: tuple[list[Example], SparseIndex] | None = None

    @classmethod
    def from_config(cls, llm: Any, **options: Any) -> LlmPlanner:
        """A planner for the ``[llm]`` section of the config (``orchestrator.config.LlmConfig``)."""
        return cls(
            base_url=llm.base_url,
            model=llm.model,
            api_key_env=llm.api_key_env,
            timeout_s=llm.timeout_s,
            max_tokens=llm.max_tokens,
            examples=llm.examples,
            usd_per_call=llm.usd_per_call,
            usd_per_1k_tokens=llm.usd_per_1k_tokens,
            **options,
        )

    # -- over the zoo ---------------------------------------------------------------------

    def plan(self, request: str, zoo: Zoo, *, files: Sequence[Path] = ()) -> Plan:
        """Plan ``request`` over the zoo's tasks; fall back to the embedded planner."""
        request = request.strip()
        if not request:
            raise UserError("the request is empty: say what you want done, e.g. 'Transcribe a.wav'")

        def parse(text: str) -> Plan:
            plan = _plan_from_answer(extract_json(text), request)
            validate_plan(plan, zoo, check_files=False)
            check_named_files(plan, files)
            return plan

        messages = _zoo_messages(request, zoo, files, self._zoo_examples(request, zoo))
        schema = {"name": "plan", "schema": plan_json_schema()}
        notes: list[str] = []
        plan = self._ask_validated(messages, schema, parse, notes)
        if plan is not None:
            return plan.model_copy(update={"planner": self.name, "notes": plan.notes + notes})
        fallback = self.fallback.plan(request, zoo, files=files)
        notes.append(f"fallback: planned by the {self.fallback.name} planner")
        return fallback.model_copy(
            update={"planner": f"{self.name}>{fallback.planner}", "notes": notes + fallback.notes}
        )

    def _zoo_examples(self, request: str, zoo: Zoo) -> list[tuple[str, list[dict[str, Any]]]]:
        from orchestrator.planning.examples import EXAMPLE_PLANS

        tasks = zoo.tasks()
        usable = [(r, s) for r, s in EXAMPLE_PLANS if all(x["task"] in tasks for x in s)]
        return _nearest(request, usable, lambda e: e[0], self.examples)

    # -- over a tool set by name ------------------------------------------------------------

    def plan_tools(self, request: str, tools: ToolSet) -> ToolPlan:
        """Plan ``request`` over a tool set by name; fall back to the embedded planner."""
        request = request.strip()
        examples = self._tool_examples(request, tools)
        shortlist = _shortlist(request, tools, examples)

        def parse(text: str) -> ToolPlan:
            plan = _tool_plan_from_answer(extract_json(text), request)
            check_tool_plan(plan, tools)
            return plan

        messages = _tool_messages(request, tools, shortlist, examples)
        schema = {"name": "tool_plan", "schema": ToolPlanDraft.model_json_schema()}
        notes: list[str] = []
        plan = self._ask_validated(messages, schema, parse, notes)
        if plan is not None:
            plan.planner, plan.notes = self.name, notes + plan.notes
            return plan
        fallback = self.fallback.plan_tools(request, tools)
        notes.append(f"fallback: planned by the {self.fallback.name} planner")
        fallback.planner = f"{self.name}>{fallback.planner}"
        fallback.notes = notes + fallback.notes
        return fallback

    def prepare_tools(self, tools: ToolSet) -> None:
        """Index the tool set's examples, and let the fallback learn from it, now."""
        self._tool_examples("", tools)
        prepare = getattr(self.fallback, "prepare_tools", None)
        if prepare is not None:
            prepare(tools)

    def _tool_examples(self, request: str, tools: ToolSet) -> list[Example]:
        usable = [e for e in tools.examples if e.tools]
        if self._example_index is None or self._example_index[0] is not tools.examples:
            index = SparseIndex([terms(e.request) for e in usable])
            self._example_index = (tools.examples, index)
        sims = self._example_index[1].similarities(terms(request))
        best = sorted(sims.items(), key=lambda kv: (-kv[1], kv[0]))[: self.examples]
        return [usable[i] for i, _ in best]

    # -- the loop ---------------------------------------------------------------------------

    def _ask_validated(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        parse: Callable[[str], T],
        notes: list[str],
    ) -> T | None:
        """Ask, validate, repair once; None when no valid plan came back (notes say why)."""
        for round_ in ("first", "repair"):
            try:
                text = self._complete(messages, schema, notes)
            except _EndpointFailed as exc:
                notes.append(f"unreachable: {exc}")
                return None
            try:
                result = parse(text)
            except (PlanError, UserError) as exc:
                error = str(exc)
                notes.append(f"invalid: {round_} answer: {error}")
                messages = messages + [
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"That plan is invalid: {error}\nWrite the corrected plan as "
                        "JSON only.",
                    },
                ]
                continue
            notes.append(
                "valid: first answer" if round_ == "first" else "repaired: valid after one repair"
            )
            return result
        return None

    def _complete(
        self, messages: list[dict[str, str]], schema: dict[str, Any], notes: list[str]
    ) -> str:
        """One completion through the project's LLM client, paid from the run's budget.

        Each try is reserved and settled (see the module doc); each retry is written in the
        notes; any failure, or a call that does not fit, is an _EndpointFailed.
        """
        meter = active_meter()
        left = meter.seconds_left() if meter is not None else None
        if left is not None and left < _MIN_CALL_S:
            raise _EndpointFailed("no time left for planning within the run's budget")

        def spent(reply: PaidReply) -> None:
            usd = usd_text(self._usd(reply.tokens))
            notes.append(f"spent: {reply.tokens} tokens, {reply.seconds:.2f} s, ${usd}")

        def retried(attempt: int, exc: BaseException, wait: float) -> None:
            notes.append(f"retry: attempt {attempt} failed: {type(exc).__name__}")

        try:
            reply = self.llm.paid(
                messages,
                max_tokens=self.max_tokens,
                usd_of=self._usd,
                settled=spent,
                on_retry=retried,
                response_format={"type": "json_schema", "json_schema": schema},
                temperature=self.temperature,
            )
        except BudgetExceeded as exc:
            why = f"the planner's call does not fit the budget ({exc})"
            raise _EndpointFailed(why) from exc
        except ChatEndpointError as exc:  # CallTimedOut too
            raise _EndpointFailed(f"{type(exc).__name__}: {exc}") from exc
        return reply.text

    def _usd(self, tokens: int) -> Decimal:
        return self.usd_per_call + self.usd_per_1k_tokens * tokens / 1000


# -- prompts ------------------------------------------------------------------------------------

_ZOO_SYSTEM = (
    "You plan requests as a list of subtasks. Each subtask has an id (s1, s2, ...), a task from "
    "the list of tasks, an instruction, deps (ids of earlier subtasks it reads) and args keyed "
    'by input type ("text", "audio", "image"): {"kind": "file", "path": ...} for a file named in '
    'the request, {"kind": "text", "value": ...} for a text, {"kind": "ref", "step": id} for the '
    'output of an earlier subtask. Answer with JSON only: {"subtasks": [...]}.'
)
_TOOLS_SYSTEM = (
    "You plan requests as a sequence of tool calls. Use only tool names from the list. Answer "
    'with JSON only: {"nodes": [tool names in the order they run], "links": [{"source": a, '
    '"target": b}, ...]} where a link means the output of a feeds b.'
)


def _zoo_messages(
    request: str,
    zoo: Zoo,
    files: Sequence[Path],
    examples: list[tuple[str, list[dict[str, Any]]]],
) -> list[dict[str, str]]:
    from orchestrator.cards.tasks import task_type

    lines = []
    for task in sorted(zoo.tasks()):
        cards = [e.card for e in zoo if e.card.task == task]
        inputs = sorted({io.type for c in cards for io in c.inputs if not io.optional})
        lines.append(
            f"- {task} (inputs: {', '.join(inputs) or 'none'}): {task_type(task).description}"
        )
    system = _ZOO_SYSTEM + "\nTasks:\n" + "\n".join(lines)
    messages = [{"role": "system", "content": system}]
    for example_request, subtasks in examples:
        messages.append({"role": "user", "content": example_request})
        messages.append({"role": "assistant", "content": json.dumps({"subtasks": subtasks})})
    attached = f"\nAttached files: {', '.join(str(p) for p in files)}" if files else ""
    messages.append({"role": "user", "content": request + attached})
    return messages


def _tool_messages(
    request: str, tools: ToolSet, shortlist: list[str], examples: list[Example]
) -> list[dict[str, str]]:
    lines = [f"- {name}: {tools.get(name).description}" for name in shortlist]  # type: ignore[union-attr]
    messages = [{"role": "system", "content": _TOOLS_SYSTEM + "\nTools:\n" + "\n".join(lines)}]
    for example in examples:
        answer = {
            "nodes": list(example.tools),
            "links": [{"source": s, "target": t} for s, t in example.links],
        }
        messages.append({"role": "user", "content": example.request})
        messages.append({"role": "assistant", "content": json.dumps(answer)})
    messages.append({"role": "user", "content": request})
    return messages


def _shortlist(request: str, tools: ToolSet, examples: list[Example]) -> list[str]:
    """The tools shown to the model: all of a small set, else the examples' and best matches."""
    names = tools.names()
    if len(names) <= _SHORTLIST:
        return names
    chosen = list(dict.fromkeys(t for e in examples for t in e.tools if tools.get(t)))
    index = SparseIndex([terms(f"{t.name} {t.description}") for t in tools.tools])
    sims = index.similarities(terms(request))
    for i, _ in sorted(sims.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(chosen) >= _SHORTLIST:
            break
        if names[i] not in chosen:
            chosen.append(names[i])
    return chosen


def _nearest(request: str, items: list[T], text: Callable[[T], str], k: int) -> list[T]:
    if not items or k <= 0:
        return []
    index = SparseIndex([terms(text(item)) for item in items])
    sims = index.similarities(terms(request))
    best = sorted(range(len(items)), key=lambda i: (-sims.get(i, 0.0), i))[:k]
    return [items[i] for i in best]


# -- reading answers ----------------------------------------------------------------------------


def _plan_from_answer(data: Any, request: str) -> Plan:
    """A Plan from the model's JSON: ``{"subtasks": [...]}``, a bare list, or one subtask."""
    try:
        return _read_plan(data, request)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # odd shapes of JSON
        raise PlanError(f"malformed plan: {type(exc).__name__}: {exc}") from exc


def _read_plan(data: Any, request: str) -> Plan:
    from orchestrator.plan import parse_plan

    if isinstance(data, dict) and "subtasks" not in data and "task" in data:
        data = [data]
    if isinstance(data, list) and all(isinstance(x, dict) and "args" in x for x in data):
        typed = all(
            isinstance(v, dict) and "kind" in v for x in data for v in dict(x["args"]).values()
        )
        if not typed:  # HuggingGPT's list form
            return parse_plan(data, request)
        data = {"subtasks": data}
    if isinstance(data, dict) and isinstance(data.get("subtasks"), list):
        subtasks = [_with_defaults(s, request) for s in data["subtasks"]]
        draft = parse_plan({"request": request, "subtasks": subtasks}, request)
        return Plan(request=request, subtasks=draft.subtasks, planner="llm")
    raise PlanError('the plan must be a JSON object {"subtasks": [...]}')


def _with_defaults(subtask: Any, request: str) -> Any:
    """Small models drop fields the schema marks optional-looking; fill the harmless ones."""
    if not isinstance(subtask, dict):
        return subtask
    filled = dict(subtask)
    if "id" in filled:
        filled["id"] = str(filled["id"])
    if not filled.get("instruction"):
        filled["instruction"] = request
    if isinstance(filled.get("deps"), list):
        filled["deps"] = [str(d) for d in filled["deps"]]
    return filled


def _tool_plan_from_answer(data: Any, request: str) -> ToolPlan:
    """A ToolPlan from ``{"nodes", "links"}`` (or TaskBench's ``task_nodes``/``task_links``)."""
    if isinstance(data, list):
        data = {"nodes": data}
    if not isinstance(data, dict):
        raise PlanError('the plan must be a JSON object {"nodes": [...], "links": [...]}')
    raw_nodes = data.get("nodes", data.get("task_nodes"))
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise PlanError('the plan needs "nodes": a non-empty list of tool names')
    nodes = [
        str(n.get("task", n.get("name", ""))) if isinstance(n, dict) else str(n) for n in raw_nodes
    ]
    raw_links = data.get("links", data.get("task_links"))
    notes = []
    if raw_links is None:
        links = list(zip(nodes, nodes[1:], strict=False))
        notes.append("no links given: the tools form a chain")
    elif isinstance(raw_links, list):
        links = []
        for link in raw_links:
            if isinstance(link, dict) and "source" in link and "target" in link:
                links.append((str(link["source"]), str(link["target"])))
            elif isinstance(link, list) and len(link) == 2:
                links.append((str(link[0]), str(link[1])))
            else:
                raise PlanError(f'each link must be {{"source": ..., "target": ...}}, got {link!r}')
    else:
        raise PlanError('"links" must be a list')
    return ToolPlan(request=request, nodes=nodes, links=links, planner="llm", notes=notes)
