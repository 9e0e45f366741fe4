"""OpenTelemetry traces and metrics of aikit's work, by the GenAI semantic conventions.

aikit records through the OpenTelemetry API (`opentelemetry-api`, a core dependency: without
an SDK every call is a no-op). Once per process, on first use, it installs the SDK
(`pip install 'aikit[otel]'`) from the standard variables, unless the application has
installed providers of its own (before aikit's first call: the choice is made once):

- `OTEL_SDK_DISABLED=true`: nothing, whatever else is set.
- `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER`: `otlp` (HTTP/protobuf), `console` or
  `none`. With neither set, a signal is exported over OTLP when its endpoint is set
  (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
  `..._METRICS_ENDPOINT`); with nothing set at all, nothing is set up and tracing costs
  nothing (no SDK imported, no thread started).
- `OTEL_SERVICE_NAME` (default `aikit`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_*`
  headers and timeouts, `OTEL_BSP_*` and `OTEL_METRIC_EXPORT_INTERVAL` are read by the SDK.
- `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`: chat spans also hold the
  messages sent and the answer (`gen_ai.input.messages`, `gen_ai.output.messages`), always
  through the scrubber (`aikit._scrub`): the call's API key and every secret of the run or
  served notebook become `secret:NAME`.
- `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`: aikit emits the latest GenAI
  conventions either way (`gen_ai.provider.name`, content as attributes); without the opt-in
  it also sets the v1.36 name `gen_ai.system` for backends that still read it.
- `TRACEPARENT` / `TRACESTATE` (W3C trace context in the environment): a process started
  with them (a run's kernel, started by `aikit run`) puts its top-level spans under that
  parent, so a run's kernel's calls are in the run's trace.

Spans: `chat {model}` for every `aikit.chat`/`achat` and batch row, `aikit.batch`,
`rag.search`, `rag.answer`, `evals.evaluate`, `aikit.run {notebook}`, `aikit.playbook {name}`
and one server span per `aikit api` request (`POST /{endpoint}`); guard verdicts are events.
Metrics: `gen_ai.client.token.usage`, `gen_ai.client.operation.duration` and
`http.server.request.duration`. `playbooks/monitoring.md` says how to look at them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from aikit._scrub import Scrubber

SCOPE = "aikit"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
SECRETS_ENV = "AIKIT_SECRET_ENVS"  # names of variables holding secrets (set by `aikit run`)
LATEST = "gen_ai_latest_experimental"
PROVIDERS = {"local": "llama_cpp", "openai": "openai", "client": "openai"}
_REQUEST_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "n": "gen_ai.request.choice.count",
}
_propagator = TraceContextTextMapPropagator()
_lock = threading.Lock()
_done_pid: int | None = None
_state: dict[str, Any] = {}  # this process's setup: tracer, meters, env parent, options
_secrets: dict[str, str] = {}
_scrubbers: dict[frozenset[tuple[str, str]], Scrubber] = {}


# -- set-up ----------------------------------------------------------------------------------
def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _exporters(signal: str) -> list[str]:
    """The exporters of `signal` (`traces` or `metrics`) the environment asks for."""
    named = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower()
    if named:
        return [e.strip() for e in named.split(",") if e.strip() and e.strip() != "none"]
    endpoint = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return ["otlp"] if endpoint else []


def _setup() -> None:
    """Install the SDK from the `OTEL_*` variables, once per process (module docstring)."""
    global _done_pid
    with _lock:
        if _done_pid == os.getpid():
            return
        _done_pid = os.getpid()
        _state.clear()
        opt_in = {v.strip() for v in os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")}
        _state["latest"] = LATEST in opt_in
        _state["capture"] = _truthy(CAPTURE_ENV)
        names = ("TRACEPARENT", "TRACESTATE")
        carrier = {k.lower(): os.environ[k] for k in names if k in os.environ}
        parent = _propagator.extract(carrier) if carrier else None
        if parent is not None and trace.get_current_span(parent).get_span_context().is_valid:
            _state["parent"] = parent
        for name in os.environ.get(SECRETS_ENV, "").split(","):
            if name.strip() and os.environ.get(name.strip()):
                _secrets[name.strip()] = os.environ[name.strip()]
        if _truthy("OTEL_SDK_DISABLED"):
            return
        traces, meters = _exporters("traces"), _exporters("metrics")
        if traces and _is_default(trace.get_tracer_provider()):
            trace.set_tracer_provider(_tracer_provider(traces))
        if meters and _is_default(metrics.get_meter_provider()):
            metrics.set_meter_provider(_meter_provider(meters))


def _is_default(provider: Any) -> bool:
    """Whether a global provider is the API's placeholder (none installed yet)."""
    return type(provider).__name__ in (
        "ProxyTracerProvider",
        "NoOpTracerProvider",
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
    )


def _resource() -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "aikit"}))
    return resource


def _tracer_provider(exporters: Sequence[str]) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=_resource())
    for name in exporters:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            _check_protocol("TRACES")
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _meter_provider(exporters: Sequence[str]) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )

    readers = []
    for name in exporters:
        if name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif name == "otlp":
            _check_protocol("METRICS")
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    return MeterProvider(metric_readers=readers, resource=_resource())


def _check_protocol(signal: str) -> None:
    protocol = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip() not in ("http/protobuf", ""):
        from aikit.errors import ConfigError

        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: aikit exports OTLP over HTTP only;"
            " set it to http/protobuf (and the endpoint to the receiver's HTTP port)"
        )


def _tracer() -> Any:
    """This process's tracer, or None when no tracer provider was installed by the time of
    aikit's first use (the no-op path: a check of this process's set-up, nothing more)."""
    if _done_pid != os.getpid():
        _setup()
        provider = trace.get_tracer_provider()
        if not _is_default(provider):
            from importlib.metadata import version

            _state["tracer"] = provider.get_tracer(SCOPE, version("aikit"))
    return _state.get("tracer")


def _meters() -> dict[str, Any] | None:
    """The instruments, or None when no meter provider was installed by then."""
    if _done_pid != os.getpid():
        _tracer()
    if "meters" not in _state:
        provider = metrics.get_meter_provider()
        if _is_default(provider):
            _state["meters"] = None
        else:
            meter = provider.get_meter(SCOPE)
            _state["meters"] = {
                "tokens": meter.create_histogram(
                    "gen_ai.client.token.usage", unit="{token}", description="tokens per call"
                ),
                "duration": meter.create_histogram(
                    "gen_ai.client.operation.duration", unit="s", description="model call time"
                ),
                "http": meter.create_histogram(
                    "http.server.request.duration", unit="s", description="aikit api request time"
                ),
            }
    meters: dict[str, Any] | None = _state["meters"]
    return meters


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return _tracer() is not None


def flush() -> None:
    """Export what is buffered now (`aikit api` at shutdown: uvicorn ends the process by its
    signal, so no exit handler runs)."""
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            force_flush()


def keep_out(secrets: Mapping[str, str]) -> None:
    """Secrets (name -> value) that no span may hold (`aikit api`'s secret parameters and
    token; a run's kernel gets its own from `AIKIT_SECRET_ENVS`)."""
    _secrets.update({k: v for k, v in secrets.items() if v})


def _scrubber(extra: Mapping[str, str]) -> Scrubber:
    key = frozenset({**_secrets, **{k: v for k, v in extra.items() if v}}.items())
    if key not in _scrubbers:
        _scrubbers[key] = Scrubber(dict(key))
    return _scrubbers[key]


# -- spans -----------------------------------------------------------------------------------
@contextmanager
def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Any = None,
) -> Iterator[Any]:
    """A span around the block, current inside it (None when tracing is off). A top-level
    span's parent is `TRACEPARENT`'s, if the process was started with one. An exception ends
    it with status ERROR and `error.type` (its message is never recorded: it may hold data)."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    if parent is None and not trace.get_current_span().get_span_context().is_valid:
        parent = _state.get("parent")
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=_clean(attributes or {}),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            fail(current, type(exc).__name__)
            raise


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            value = [str(v) if not isinstance(v, int | float | bool) else v for v in value]
        elif not isinstance(value, str | bool | int | float):
            value = str(value)
        out[key] = value
    return out


def annotate(current: Any, attributes: Mapping[str, Any]) -> None:
    """Set attributes on a span from `span()` (nothing when it is None)."""
    if current is not None:
        current.set_attributes(_clean(attributes))


def fail(current: Any, error_type: str, description: str | None = None) -> None:
    """Mark a span as failed with `error.type` (nothing when it is None)."""
    if current is not None:
        current.set_attribute("error.type", error_type)
        current.set_status(Status(StatusCode.ERROR, description))


def event(name: str, attributes: Mapping[str, Any] | None = None, current: Any = None) -> None:
    """An event on `current` or, by default, the current span (nothing when tracing is off)."""
    target = current if current is not None else trace.get_current_span()
    if target.is_recording():
        target.add_event(name, _clean(attributes or {}))


def verdicts(found: Sequence[Any], stage: str, current: Any = None) -> None:
    """Guard verdicts (`aikit.guards.Verdict`s or their log dicts) as `aikit.guard` events."""
    for verdict in found:
        log = verdict if isinstance(verdict, Mapping) else verdict.to_log()
        event(
            "aikit.guard",
            {
                "aikit.guard_stage": stage,
                "aikit.guard_name": log.get("guard"),
                "aikit.guard_action": log.get("action"),
                "aikit.guard_score": log.get("score"),
                "aikit.guard_reasons": [str(r) for r in log.get("reasons") or []],
            },
            current,
        )


def environ() -> dict[str, str]:
    """W3C trace context of the current span as `TRACEPARENT`/`TRACESTATE` variables, for a
    process started now (empty when tracing is off)."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        _propagator.inject(carrier)
    return {k.upper(): v for k, v in carrier.items()}


def context_from(headers: Mapping[str, str]) -> Any:
    """The parent context a request's `traceparent` header names (None: a new trace)."""
    if "traceparent" not in headers:
        return otel_context.Context()
    return _propagator.extract(dict(headers))


def trace_id(current: Any) -> str | None:
    """The 32-hex trace id of a span (None when tracing is off)."""
    if current is None or not current.get_span_context().is_valid:
        return None
    return format(current.get_span_context().trace_id, "032x")


# -- model calls -----------------------------------------------------------------------------
class Chat:
    """One chat call being recorded: its span (None with tracing off) and its metrics."""

    def __init__(self, current: Any, attributes: dict[str, Any]) -> None:
        self.span, self.attributes, self.started = current, attributes, time.perf_counter()
        self.usage: dict[str, Any] = {}


@contextmanager
def chat_span(endpoint: Any, model: str) -> Iterator[Chat | None]:
    """The `chat {model}` span of one `aikit.chat`/`achat` or batch row, and its metrics
    (None when neither traces nor metrics are on)."""
    if _tracer() is None and _meters() is None:
        yield None
        return
    provider = PROVIDERS.get(endpoint.kind, "openai")
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
    }
    if not _state.get("latest"):
        attributes["gen_ai.system"] = provider  # the v1.36 name (module docstring)
    if endpoint.base_url:
        from urllib.parse import urlsplit

        parts = urlsplit(endpoint.base_url)
        attributes["server.address"] = parts.hostname
        attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    with span(f"chat {model}", attributes, kind=SpanKind.CLIENT) as current:
        chat = Chat(current, attributes)
        try:
            yield chat
        except BaseException as exc:
            _record_call(chat, type(exc).__name__)
            raise
        _record_call(chat, None)


def _record_call(chat: Chat, error: str | None) -> None:
    meters = _meters()
    if meters is None:
        return
    keys = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model")
    attributes = {k: chat.attributes[k] for k in keys}
    if error:
        attributes["error.type"] = error
    if chat.usage.get("model"):
        attributes["gen_ai.response.model"] = chat.usage["model"]
    meters["duration"].record(time.perf_counter() - chat.started, attributes)
    for kind in ("input", "output"):
        if kind in chat.usage:
            meters["tokens"].record(chat.usage[kind], {**attributes, "gen_ai.token.type": kind})


def chat_request(
    chat: Chat | None, endpoint: Any, messages: Any, request: Mapping[str, Any]
) -> None:
    """The request's parameters (and, with content capture, its messages) on a chat span."""
    if chat is None or chat.span is None:
        return
    attributes: dict[str, Any] = {
        _REQUEST_PARAMS[k]: v for k, v in request.items() if k in _REQUEST_PARAMS and v is not None
    }
    stop = request.get("stop")
    if stop:
        attributes["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else stop
    attributes["gen_ai.output.type"] = "json" if request.get("response_format") else "text"
    if _state.get("capture"):
        parts = [
            {"role": m.get("role"), "parts": [{"type": "text", "content": m.get("content")}]}
            for m in messages
        ]
        attributes["gen_ai.input.messages"] = _content(parts, endpoint)
    annotate(chat.span, attributes)


def chat_reply(chat: Chat | None, endpoint: Any, reply: Any, completion: Any) -> None:
    """The answer's model, usage, finish reasons, store and cost on a chat span."""
    if chat is None:
        return
    chat.usage = {
        "model": completion.model,
        "input": reply.usage.prompt_tokens,
        "output": reply.usage.completion_tokens,
    }
    if chat.span is None:
        return
    finish = [c.finish_reason or "" for c in completion.choices] if completion.choices else []
    attributes: dict[str, Any] = {
        "gen_ai.response.model": completion.model,
        "gen_ai.response.id": completion.id,
        "gen_ai.response.finish_reasons": finish,
        "gen_ai.usage.input_tokens": reply.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": reply.usage.completion_tokens,
        "aikit.cached": reply.cached,
        "aikit.cost_usd": reply.cost,
        "aikit.calls": reply.calls,
    }
    if _state.get("capture"):
        answer = {"role": "assistant", "parts": [{"type": "text", "content": reply.text}]}
        attributes["gen_ai.output.messages"] = _content(
            [{**answer, "finish_reason": finish[0] if finish else ""}], endpoint
        )
    annotate(chat.span, attributes)


def _content(value: Any, endpoint: Any) -> str:
    key = {endpoint.api_key_env or "OPENAI_API_KEY": endpoint.api_key or ""}
    return json.dumps(_scrubber(key).json(value), ensure_ascii=False)


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    """One `aikit api` request in `http.server.request.duration`."""
    meters = _meters()
    if meters is None:
        return
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "http.route": route,
        "http.response.status_code": status,
        "url.scheme": "http",
    }
    if status >= 500:
        attributes["error.type"] = str(status)
    meters["http"].record(seconds, attributes)
