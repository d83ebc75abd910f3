"""OpenTelemetry traces of runs, following the GenAI semantic conventions; off unless configured.

A run is one ``invoke_agent orchestrator`` span; under it, one span per decision the pipeline
makes (``plan``, ``select``, ``route ACTION``) and one ``execute_tool CARD`` span per call to a
card, with the model, its tokens (``gen_ai.usage.input_tokens`` / ``output_tokens``), its cost
(``orchestrator.cost.usd``) and its outcome (span status, ``error.type``). The spans are made
from the run's typed progress events (:mod:`orchestrator.events`), so what is traced is what
the CLI and the server show.

Spans are exported over OTLP/HTTP to the endpoint the standard ``OTEL_EXPORTER_OTLP_*``
variables name (``[tracing] otlp = true``, or setting the endpoint variable, turns this on),
and/or written as JSON lines to ``[tracing] jsonl`` for people without a collector.
``OTEL_SDK_DISABLED=true`` turns both off. The OpenTelemetry SDK is imported only then.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from orchestrator.config import TracingConfig
from orchestrator.events import (
    Answered,
    Decided,
    Event,
    PlanMade,
    Rejected,
    Selected,
    StepFinished,
    StepStarted,
)

__all__ = ["JsonlSpanExporter", "RunTrace", "Traces"]

AGENT = "orchestrator"


class Traces:
    """Where a run's spans go: an OpenTelemetry tracer provider, or nowhere (tracing off)."""

    def __init__(self, provider: Any = None) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("orchestrator") if provider is not None else None

    @classmethod
    def from_config(cls, config: TracingConfig) -> Traces:
        """The exporters ``config`` asks for; a tracer that does nothing when it asks for none."""
        if not config.enabled:
            return cls()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": AGENT}))
        if config.exports_otlp:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        if config.jsonl is not None:
            provider.add_span_processor(SimpleSpanProcessor(JsonlSpanExporter(config.jsonl)))
        return cls(provider)

    @contextlib.contextmanager
    def run(
        self, run_id: str, request: str, on_event: Callable[[Event], None] | None
    ) -> Iterator[Callable[[Event], None] | None]:
        """Trace one run: yields the event callback to give the pipeline (``on_event`` too)."""
        if self.tracer is None:
            yield on_event
            return
        trace = RunTrace(self.tracer, run_id, request)

        def both(event: Event) -> None:
            trace.on_event(event)
            if on_event is not None:
                on_event(event)

        try:
            yield both
        except BaseException as exc:
            trace.end(outcome="error", error=type(exc).__name__)
            raise
        trace.end(outcome="cancelled")  # a run that answered has ended its span already

    def close(self) -> None:
        """Export what is pending and stop the exporters."""
        if self.provider is not None:
            self.provider.shutdown()


class RunTrace:
    """The spans of one run, made from its events (thread-safe: steps emit from threads)."""

    def __init__(self, tracer: Any, run_id: str, request: str) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.tracer = tracer
        self.lock = threading.RLock()  # end() runs under on_event too
        self.span = tracer.start_span(
            f"invoke_agent {AGENT}",
            kind=trace.SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": AGENT,
                "orchestrator.run_id": run_id,
                "orchestrator.request_chars": len(request),
            },
        )
        self.context = trace.set_span_in_context(self.span)
        self.steps: dict[str, Any] = {}
        self.ended = False

    def _instant(self, name: str, attributes: dict[str, Any]) -> None:
        self.tracer.start_span(name, context=self.context, attributes=attributes).end()

    def on_event(self, event: Event) -> None:
        with self.lock:
            if self.ended:
                return
            self._record(event)

    def _record(self, event: Event) -> None:
        match event:
            case PlanMade(plan=plan):
                subtasks = plan.get("subtasks") or []
                self._instant(
                    "plan",
                    {
                        "orchestrator.planner": str(plan.get("planner") or ""),
                        "orchestrator.subtasks": len(subtasks),
                        "orchestrator.tasks": [str(s.get("task")) for s in subtasks],
                    },
                )
            case Selected(selections=selections):
                for step, chosen in selections.items():
                    ranked = chosen.get("candidates") if isinstance(chosen, dict) else chosen
                    first = (ranked or [{}])[0]
                    self._instant(
                        "select",
                        {
                            "orchestrator.step": step,
                            "orchestrator.card": str(first.get("card") or ""),
                            "orchestrator.score": float(first.get("score") or 0.0),
                            "orchestrator.candidates": len(ranked or []),
                        },
                    )
            case Decided():
                self._instant(f"route {event.action}", _decision(event))
            case StepStarted(step=step, card=card, task=task):
                self.steps[step] = self.tracer.start_span(
                    f"execute_tool {card}",
                    context=self.context,
                    attributes={
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": card,
                        "gen_ai.request.model": card,
                        "orchestrator.step": step,
                        "orchestrator.task": task,
                    },
                )
            case StepFinished():
                self._finish_step(event)
            case Answered(outcome=outcome) | Rejected(outcome=outcome):
                self.end(outcome=outcome)

    def _finish_step(self, event: StepFinished) -> None:
        span = self.steps.pop(event.step, None)
        if span is None:  # refused before its call (over budget): it never started
            span = self.tracer.start_span(f"execute_tool {event.card}", context=self.context)
            span.set_attribute("gen_ai.operation.name", "execute_tool")
            span.set_attribute("gen_ai.tool.name", event.card)
        span.set_attributes(
            {
                "gen_ai.request.model": event.card,
                "gen_ai.usage.input_tokens": event.input_tokens or 0,
                "gen_ai.usage.output_tokens": event.output_tokens or 0,
                "orchestrator.tokens": event.tokens,
                "orchestrator.cost.usd": float(event.usd),
                "orchestrator.seconds": event.seconds,
                "orchestrator.load_seconds": event.load_seconds,
                "orchestrator.outcome": event.status,
                "orchestrator.candidate": event.candidate,
            }
        )
        if event.status != "ok":
            span.set_attribute("error.type", event.status)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, event.error or ""))
        span.end()

    def end(self, outcome: str, error: str | None = None) -> None:
        """End the run's span (once) with its outcome; steps still open end with it."""
        with self.lock:
            if self.ended:
                return
            self.ended = True
            for span in self.steps.values():
                span.set_attribute("orchestrator.outcome", outcome)
                span.end()
            self.span.set_attribute("orchestrator.outcome", outcome)
            if error is not None or outcome in ("failed", "error"):
                self.span.set_attribute("error.type", error or outcome)
                self.span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, outcome))
            self.span.end()


def _decision(event: Decided) -> dict[str, Any]:
    return {
        "orchestrator.step": event.step,
        "orchestrator.action": event.action,
        "orchestrator.card": event.card or "",
        "orchestrator.reason": event.reason,
        "orchestrator.policy": event.policy,
    }


class JsonlSpanExporter:
    """Writes each finished span as one JSON line (the SDK's own JSON form of a span)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = [json.dumps(json.loads(span.to_json()), separators=(",", ":")) for span in spans]
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.writelines(line + "\n" for line in lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: each export opens and closes the file."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
