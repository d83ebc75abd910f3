"""OpenTelemetry traces of runs: GenAI-convention spans, off unless configured, OTLP and JSONL."""

from __future__ import annotations

import http.server
import json
import threading
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import Budget, Config, Orchestrator
from orchestrator.config import TracingConfig
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.tracing import Traces


def _traced(tmp_path, builtin_zoo, **config):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    orch = Orchestrator(
        Config(runs_dir=tmp_path / "runs", **config),
        zoo=builtin_zoo,
        executor=InProcessExecutor(),
        checkpoint_path=tmp_path / "store.sqlite",
    )
    orch.traces = Traces(provider)
    return orch, exporter


def test_a_run_is_one_agent_span_with_a_span_per_decision_and_per_tool_call(tmp_path, builtin_zoo):
    orch, exporter = _traced(tmp_path, builtin_zoo)
    with orch:
        result = orch.run('Is "I love this" positive, and which language is it?')
    assert result.ok, result.message
    spans = exporter.get_finished_spans()
    [run] = [s for s in spans if s.name == "invoke_agent orchestrator"]
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["orchestrator.run_id"] == result.run_id
    assert run.attributes["orchestrator.outcome"] == "ok"
    children = [s for s in spans if s is not run]
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in children)
    assert all(s.context.trace_id == run.context.trace_id for s in children)
    names = [s.name for s in children]
    assert "plan" in names and "select" in names and any(n.startswith("route ") for n in names)
    calls = [s for s in children if s.name.startswith("execute_tool ")]
    assert sorted(s.attributes["gen_ai.tool.name"] for s in calls) == sorted(
        step.card for step in result.steps
    )
    for call in calls:
        assert call.attributes["gen_ai.operation.name"] == "execute_tool"
        assert call.attributes["orchestrator.outcome"] == "ok"
        assert call.end_time > call.start_time
    cost = sum(Decimal(str(s.attributes["orchestrator.cost.usd"])) for s in calls)
    assert abs(cost - Decimal(str(result.spent["usd"]))) < Decimal("0.000001")


def test_a_failed_call_and_a_refused_request_are_traced_as_errors_and_refusals(
    tmp_path, builtin_zoo
):
    orch, exporter = _traced(tmp_path, builtin_zoo)
    with orch:
        refused = orch.run("Book me a table at an Italian restaurant for Friday")
        starved = orch.run('Is "I love this" positive?', budget=Budget(usd=Decimal("0")))
    assert refused.status == "unservable" and starved.status == "budget_exhausted"
    runs = [s for s in exporter.get_finished_spans() if s.name == "invoke_agent orchestrator"]
    assert [r.attributes["orchestrator.outcome"] for r in runs] == [
        "unservable",
        "budget_exhausted",
    ]
    refused_calls = [
        s for s in exporter.get_finished_spans()
        if s.name.startswith("execute_tool") and s.attributes["orchestrator.outcome"] != "ok"
    ]  # fmt: skip
    assert refused_calls and all(not s.status.is_ok for s in refused_calls)
    assert all(s.attributes["error.type"] == "over_budget" for s in refused_calls)


def test_tracing_is_off_unless_configured(monkeypatch, tmp_path):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert Traces.from_config(TracingConfig()).tracer is None
    assert Traces.from_config(TracingConfig(jsonl=tmp_path / "t.jsonl")).tracer is not None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert TracingConfig().exports_otlp
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert Traces.from_config(TracingConfig(jsonl=tmp_path / "t.jsonl")).tracer is None


def test_spans_go_to_a_jsonl_file_for_people_without_a_collector(tmp_path, builtin_zoo):
    path = tmp_path / "traces" / "spans.jsonl"
    config = Config(runs_dir=tmp_path / "runs", tracing=TracingConfig(jsonl=path))
    with Orchestrator(config, zoo=builtin_zoo, executor=InProcessExecutor(), durable=False) as orch:
        result = orch.run('Is "I love this" positive?')
    assert result.ok
    spans = [json.loads(line) for line in path.read_text().splitlines()]
    names = {s["name"] for s in spans}
    assert "invoke_agent orchestrator" in names and "execute_tool vader-sentiment" in names
    assert len({s["context"]["trace_id"] for s in spans}) == 1


class _Collector(http.server.BaseHTTPRequestHandler):
    """A real OTLP/HTTP receiver: it keeps the protobuf bodies posted to /v1/traces."""

    bodies: list[bytes] = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            _Collector.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Collector.bodies = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_standard_otlp_variable_sends_spans_to_a_collector(
    collector, monkeypatch, tmp_path, builtin_zoo
):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
    config = Config(runs_dir=tmp_path / "runs")
    with Orchestrator(config, zoo=builtin_zoo, executor=InProcessExecutor(), durable=False) as orch:
        assert orch.run('Is "I love this" positive?').ok
    # close() flushed the batch; decode what arrived.
    names = set()
    for body in _Collector.bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                names |= {span.name for span in scope.spans}
    assert {"invoke_agent orchestrator", "execute_tool vader-sentiment", "plan"} <= names
