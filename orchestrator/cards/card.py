"""Tool cards: one YAML file per model, validated by pydantic when it is loaded.

A card says what a model does (task type, description, typed inputs and outputs), how to load it
(one of the registered backends), what it costs, what it needs, and what it cannot do.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.resources
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.errors import CardDefect, CardError, UserError
from orchestrator.io_types import IO_TYPES, IOType
from orchestrator.permissions import Permissions

__all__ = [
    "BACKEND_KINDS",
    "BackendSpec",
    "CapabilityProfile",
    "CostSpec",
    "DiffusersBackend",
    "IOSpec",
    "OpenAIBackend",
    "ProbeResult",
    "PythonBackend",
    "ReplayBackend",
    "Requirements",
    "ToolCard",
    "TransformersBackend",
    "MAX_CARD_BYTES",
    "builtin_cards_dir",
    "card_digest",
    "card_from_yaml",
    "load_card",
    "yaml_problem",
]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
TASK_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
MAX_CARD_BYTES = 256 * 1024
"""The largest card file read: a card is a short text (its profile is a file of its own)."""
_MAX_YAML_DEPTH = 32


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IOSpec(_Strict):
    """One typed input or output of a tool."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: IOType
    description: str = ""
    optional: bool = False


class CostSpec(_Strict):
    """A card's prices (US dollars as exact decimals), expected seconds and memory per call.

    What a run spends is an amount, a :class:`orchestrator.budget.Cost`, priced from these.
    """

    usd_per_call: Decimal = Decimal(0)
    usd_per_second: Decimal = Field(
        default=Decimal(0), description="price of the compute time a call takes"
    )
    usd_per_1k_input_tokens: Decimal = Decimal(0)
    usd_per_1k_output_tokens: Decimal = Decimal(0)
    latency_s: float = Field(default=1.0, gt=0, description="expected seconds per call, warm")
    load_s: float = Field(default=1.0, ge=0, description="expected seconds to load the model")
    memory_mb: int = Field(default=256, gt=0)

    @field_validator(
        "usd_per_call",
        "usd_per_second",
        "usd_per_1k_input_tokens",
        "usd_per_1k_output_tokens",
        mode="before",
    )
    @classmethod
    def _exact_money(cls, value: Any) -> Any:
        if isinstance(value, float):
            # YAML floats lose exactness; go through their shortest repr.
            return Decimal(repr(value))
        return value

    @field_validator(
        "usd_per_call", "usd_per_second", "usd_per_1k_input_tokens", "usd_per_1k_output_tokens"
    )
    @classmethod
    def _non_negative(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0:
            raise ValueError("must be a non-negative amount of US dollars, e.g. 0.002")
        return value


class Requirements(_Strict):
    """What a tool needs from the machine."""

    packages: list[str] = Field(
        default_factory=list, description="Python modules that must be importable"
    )
    network: bool = False
    gpu: bool = False
    disk_mb: int = Field(default=0, ge=0)


class TransformersBackend(_Strict):
    """A transformers `pipeline` built from a hub id or a local folder."""

    kind: Literal["transformers"]
    task: str = Field(description="the transformers pipeline task")
    model: str = Field(description="hub id, local folder, or pkg://module/relative/path")
    gguf_file: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    call_options: dict[str, Any] = Field(default_factory=dict)


class DiffusersBackend(_Strict):
    """A diffusers pipeline built from a hub id or a local folder."""

    kind: Literal["diffusers"]
    model: str
    pipeline: str = "DiffusionPipeline"
    options: dict[str, Any] = Field(default_factory=dict)
    call_options: dict[str, Any] = Field(default_factory=dict)


class OpenAIBackend(_Strict):
    """A chat model behind an OpenAI-compatible endpoint, reached with the openai SDK."""

    kind: Literal["openai"]
    model: str
    base_url: str | None = Field(default=None, description="default: $OPENAI_BASE_URL")
    api_key_env: str = "OPENAI_API_KEY"
    system_prompt: str | None = None
    max_tokens: int = Field(default=256, gt=0)
    temperature: float = Field(default=0.0, ge=0, le=2)


class PythonBackend(_Strict):
    """A Python entry point `module:factory`; the factory takes options and returns the tool."""

    kind: Literal["python"]
    entry: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    options: dict[str, Any] = Field(default_factory=dict)


class ReplayBackend(_Strict):
    """Recorded answers: a call returns what ``model`` answered to the same prompt, at its cost.

    ``records`` is a CSV in RouterBench's layout (a ``prompt`` column, ``<model>|model_response``
    and ``<model>|total_cost`` columns) or JSON lines ``{"prompt", "response", "usd"}``.
    """

    kind: Literal["replay"]
    model: str
    records: str


BACKEND_KINDS: tuple[str, ...] = ("transformers", "diffusers", "openai", "python", "replay")
"""The backend kinds that ship with the project (every registered kind: ``backend_kinds()``)."""


def _validated_backend(value: Any) -> BaseModel:
    """A card's ``backend``, validated by the spec its ``kind`` registered (see cards.backend)."""
    from orchestrator.cards.backend import BACKENDS, backend_spec  # it imports this module

    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if not isinstance(kind, str):
        raise PydanticCustomError("union_tag_not_found", "backend needs a 'kind'")
    if kind not in BACKENDS:
        raise PydanticCustomError("union_tag_invalid", "unknown backend kind")
    try:
        spec = backend_spec(kind)
    except UserError as exc:  # a plugin that fails to import, or declares no spec
        raise PydanticCustomError("backend_plugin", "{problem}", {"problem": str(exc)}) from exc
    if isinstance(value, spec):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    return spec.model_validate(value)


BackendSpec = Annotated[Any, PlainValidator(_validated_backend)]
"""A card's backend: the pydantic spec of the backend kind it names, looked up in the registry."""


class ProbeResult(_Strict):
    """One probe of a capability profile: an instruction and the score the model got on it."""

    instruction: str
    score: float = Field(ge=0, le=1)
    seconds: float = Field(default=0, ge=0)
    error: str | None = Field(default=None, description="why the probe failed (score 0)")


class CapabilityProfile(_Strict):
    """Measured evidence of what the model does well (written by the profiling command)."""

    card_digest: str = ""
    probes: list[ProbeResult] = Field(default_factory=list)
    latency_s: float | None = Field(default=None, ge=0, description="median seconds per probe")
    usd_per_call: Decimal | None = Field(default=None, ge=0, description="measured cost per call")

    @property
    def mean_score(self) -> float:
        return sum(p.score for p in self.probes) / len(self.probes) if self.probes else 0.0


class ToolCard(_Strict):
    """One model of the zoo."""

    name: str
    task: str = Field(description="Hugging Face pipeline tag where one fits")
    description: str = Field(min_length=10, description="written for selection")
    version: str = "1"
    inputs: list[IOSpec] = Field(min_length=1)
    outputs: list[IOSpec] = Field(min_length=1)
    backend: BackendSpec
    cost: CostSpec = Field(default_factory=CostSpec)
    requires: Requirements = Field(default_factory=Requirements)
    permissions: Permissions = Field(default_factory=Permissions)
    languages: list[str] = Field(default_factory=list, description="ISO 639-1 codes; empty: any")
    tags: list[str] = Field(default_factory=list)
    limitations: list[str] = Field(default_factory=list)
    result_label: str | None = Field(
        default=None, description="how the result is named in an answer, e.g. 'Language'"
    )
    strength: float = Field(
        default=0.5, ge=0, le=1, description="prior quality in 0..1, used until profiled"
    )
    profile: CapabilityProfile | None = None
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this card was loaded from (None for a card made in memory)."""
        return self._source

    @property
    def folder(self) -> Path | None:
        """The folder of the card file: a python card's code lives there (None in memory)."""
        return self._source.parent if self._source is not None else None

    @property
    def code_folder(self) -> Path | None:
        """Where a python card's own modules are imported from: its folder.

        Only its own workers import from it, after the interpreter's modules. None for other
        kinds of card and for the built-in ones.
        """
        if self.backend.kind != "python" or self.builtin:
            return None
        return self.folder

    @property
    def builtin(self) -> bool:
        """Whether the card ships with the project (its requests are approved as they are)."""
        return self.folder is not None and self.folder == builtin_cards_dir()

    def with_source(self, path: Path) -> ToolCard:
        """This card, as loaded from ``path``."""
        card = self.model_copy()
        card._source = path.resolve()
        return card

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(
                "use lower-case letters, digits, '.', '_' or '-', e.g. whisper-tiny-en"
            )
        return value

    @field_validator("task")
    @classmethod
    def _task_shape(cls, value: str) -> str:
        if not TASK_PATTERN.match(value):
            raise ValueError("use a pipeline tag such as text-classification")
        return value

    @model_validator(mode="after")
    def _unique_io_names(self) -> ToolCard:
        for side in ("inputs", "outputs"):
            names = [io.name for io in getattr(self, side)]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{side} names must be unique, repeated: {', '.join(dupes)}")
        return self

    def input_types(self) -> set[str]:
        return {io.type for io in self.inputs if not io.optional}

    def output_types(self) -> set[str]:
        return {io.type for io in self.outputs}

    def primary_output(self) -> IOSpec:
        return self.outputs[0]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's annotation allows (one, or the members of a union)."""
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    return [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]


def _model_at(loc: tuple[int | str, ...], data: Any) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` in the card ``data`` (for suggestions).

    Under ``backend`` it is the spec of the backend kind the card names.
    """
    if loc[:1] == ("backend",) and len(loc) == 2:
        return _spec_named_in(data)
    models: list[type[BaseModel]] = [ToolCard]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = [m.model_fields[str(part)] for m in models if str(part) in m.model_fields]
        if not fields:
            return None
        models = _models_in(fields[0].annotation)
    return models[0] if len(models) == 1 else None


def _spec_named_in(data: Any) -> type[BaseModel] | None:
    from orchestrator.cards.backend import backend_spec

    backend = data.get("backend") if isinstance(data, dict) else None
    kind = backend.get("kind") if isinstance(backend, dict) else None
    try:
        return backend_spec(kind) if isinstance(kind, str) else None
    except (UserError, KeyError):
        return None


def _unknown_field_message(loc: tuple[int | str, ...], data: Any) -> str:
    model = _model_at(loc, data)
    known = sorted(model.model_fields) if model else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listing = f" Allowed: {', '.join(known)}." if known else ""
    return f"unknown field{hint}{listing}"


def _defects_from(error: ValidationError, path: Path | None, data: Any) -> list[CardDefect]:
    from orchestrator.cards.backend import backend_kinds

    defects = []
    for item in error.errors():
        loc = item["loc"]
        field = ".".join(str(part) for part in loc) or "<card>"
        kind = item["type"]
        if kind == "extra_forbidden":
            message = _unknown_field_message(item["loc"], data)
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "union_tag_invalid":
            message = (
                f"unknown backend kind; use one of: {', '.join(backend_kinds())} (a package "
                "adds a kind through the 'orchestrator.backends' entry point group)"
            )
        elif kind == "union_tag_not_found":
            message = f"backend needs a 'kind', one of: {', '.join(backend_kinds())}"
        elif kind == "literal_error" and field.endswith(".type"):
            message = f"unknown type {item.get('input')!r}; use one of: {', '.join(IO_TYPES)}"
        else:
            message = item["msg"]
        defects.append(CardDefect(path, field, message))
    return defects


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a card file may not use (an alias, or nesting past the cap)."""


class _CardLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and with a nesting cap.

    An alias (``*name``) repeats a subtree, so a few lines of nested aliases expand to billions
    of nodes ("billion laughs") when a card is first used; deep nesting exhausts the stack.
    A card needs neither, so both are refused while the file is read, before anything grows.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(
                problem=f"the alias '*{event.anchor}' is not allowed in a card file (aliases "
                "can expand without bound); write the value out",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > _MAX_YAML_DEPTH:
                raise _Refused(
                    problem=f"values are nested deeper than {_MAX_YAML_DEPTH} levels",
                    problem_mark=self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line, with line and column (PyYAML's text names no file)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if not problem:
        return "not valid YAML: " + " ".join(str(exc).replace('"<unicode string>", ', "").split())
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    text = f"refused: {problem}" if isinstance(exc, _Refused) else f"not valid YAML: {problem}"
    if mark is not None:
        text += f" at line {mark.line + 1}, column {mark.column + 1}"
    if context:
        text += f" ({context}"
        if context_mark is not None:
            text += f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
        text += ")"
    return text


def card_from_yaml(text: str, path: Path | None = None) -> ToolCard:
    """Parse and validate one card; raise :class:`CardError` naming file, field and fix."""
    try:
        data = yaml.load(text, Loader=_CardLoader)  # a safe loader, minus aliases
    except yaml.YAMLError as exc:
        raise CardError([CardDefect(path, "<yaml>", yaml_problem(exc))]) from exc
    if not isinstance(data, dict):
        raise CardError([CardDefect(path, "<card>", "a card must be a YAML mapping of fields")])
    try:
        return ToolCard.model_validate(data)
    except ValidationError as exc:
        raise CardError(_defects_from(exc, path, data)) from exc


def load_card(path: Path) -> ToolCard:
    """Load one card file (at most :data:`MAX_CARD_BYTES`), validated, its ``source`` set."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise CardError([CardDefect(path, "<file>", f"cannot read: {exc.strerror}")]) from exc
    if len(data) > MAX_CARD_BYTES:
        message = (
            f"the file is larger than {MAX_CARD_BYTES // 1024} KB, the most a card file may "
            "be; a card is a short YAML text"
        )
        raise CardError([CardDefect(path, "<file>", message)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text (byte {exc.start}); save the card as UTF-8"
        raise CardError([CardDefect(path, "<file>", message)]) from exc
    return card_from_yaml(text, path).with_source(path)


def card_digest(card: ToolCard) -> str:
    """A short digest of the card's content, its profile left out: changes when the card changes.

    A profile is stale when the digest it was measured for is not its card's, and a warm worker
    is keyed by it (an edited card gets a fresh worker; a new profile is no code, so it does not).
    Fields left at their defaults are left out, so a new optional card field added to the schema
    does not make every profile stale.
    """
    body = card.model_dump_json(exclude={"profile"}, exclude_defaults=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@functools.cache
def builtin_cards_dir() -> Path:
    """The folder of the cards that ship with the project."""
    return Path(str(importlib.resources.files("orchestrator.cards.builtin"))).resolve()
