"""Live scores: `aikit api --score METRIC[:RATE]` and `@aikit.endpoint(score=...)` score a
sample of the requests an endpoint answered, after the answer has gone out.

What can score (each gives a value in [0, 1], or None: unscored):
- a RAG answer metric, `faithfulness` or `answer_relevance`, for an endpoint that returns a
  `rag.Answer` (the answer's text, the passages it was shown and its question);
- any metric of `aikit.evals` that needs no reference answer (`json_valid`), and in code any
  metric function or judge (`aikit.evals.judge(..., model="another-model")`: its calls go
  through the judge model's own limiter, `aikit._limit`, like every model call);
- a guard (`pii`, `secrets`, `prompt_injection`, ... or a guard function in code): 1.0 when it
  finds nothing, 0.0 when it would block, redact or flag (the action is the score's detail);
  an input guard checks the request's text fields, an output guard the answer.

`RATE` (default 1.0) is the share of requests scored, picked from the row id so that a
request is in or out of a metric's sample for good. Scoring never runs on the caller's time:
the guard hands each answered request to one background thread per server process through a
bounded queue (`QUEUE_SIZE` requests); when the queue is full the request is not scored, the
`dropped` count grows and a warning line is printed (the first time, then every 100th).

Each score is a row of the log's `scores` table and a span `score {metric}` whose parent is
the request's span (when an OpenTelemetry SDK traces requests), with attributes
`aikit.score.metric`, `aikit.score.value` and `aikit.score.model`.

`--alert METRIC<VALUE` watches the rolling mean of METRIC per endpoint over its last
`ALERT_WINDOW` (20) scores in this process, from `ALERT_MIN` (5) scores on: the first time it
falls below VALUE, one warning line goes to stderr and the counter `aikit.live_score_alerts`
grows; it alerts again only after the mean has come back to VALUE or above.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import queue
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aikit.api._log import RequestLog, ScoreRow
from aikit.errors import ApiError

QUEUE_SIZE = 1000
ALERT_WINDOW, ALERT_MIN = 20, 5
METRICS = ("answer_relevance", "faithfulness", "json_valid")  # by name, from aikit.evals
_SPEC = re.compile(r"([a-z][a-z0-9_]*)(?::(.*))?")
_ALERT = re.compile(r"\s*([a-z][a-z0-9_]*)\s*<\s*(\S+)\s*")


@dataclass(frozen=True)
class Scorer:
    """One live metric of an endpoint: its name in the log, its sample rate, what computes it,
    and whether it is a guard (`stage` input/output) or a metric (`stage` None)."""

    name: str
    rate: float
    function: Callable[..., Any]
    stage: str | None = None


def _names() -> str:
    from aikit.guards import BUILTINS

    return ", ".join([*METRICS, *sorted(BUILTINS)])


def _rate(where: str, text: str | None) -> float:
    if text is None:
        return 1.0
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not (0.0 < rate <= 1.0):
        raise ApiError(f"{where}: the rate {text!r} is not in (0, 1]; e.g. faithfulness:0.1")
    return rate


def by_name(spec: str, where: str | None = None) -> Scorer:
    """The scorer of `--score METRIC[:RATE]` (a one-line error for an unknown one)."""
    where = where or f"--score {spec}"
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise ApiError(f"{where}: write METRIC or METRIC:RATE, e.g. --score faithfulness:0.2")
    name, rate = match.group(1), _rate(where, match.group(2))
    if name in METRICS:
        from aikit import evals

        return Scorer(name, rate, getattr(evals, name))
    from aikit.guards import BUILTINS, builtin

    if name in BUILTINS:
        guard = builtin(name)
        return Scorer(name, rate, guard, _stage(guard))
    raise ApiError(f"{where}: no live metric {name!r}; use one of {_names()}")


def as_scorer(item: Any) -> Scorer:
    """A scorer from what `@aikit.endpoint(score=[...])` lists: "METRIC[:RATE]", a metric,
    judge or guard, or a (metric, rate) pair."""
    if isinstance(item, str):
        return by_name(item, f"score={item!r}")
    rate = 1.0
    if isinstance(item, tuple) and len(item) == 2:
        item, rate = item[0], _rate(f"score={item!r}", str(item[1]))
    if isinstance(item, str):
        return Scorer(by_name(item, f"score={item!r}").name, rate, by_name(item).function)
    if not callable(item):
        raise ApiError(
            f"score={item!r:.60} is not a metric; pass 'faithfulness', a metric function,"
            " aikit.evals.judge(...) or a guard, optionally as (metric, rate)"
        )
    name = str(getattr(item, "name", None) or getattr(item, "__name__", "score"))
    return Scorer(name, rate, item, _stage(item) if _is_guard(item) else None)


def _is_guard(function: Any) -> bool:
    """A guard: marked by `aikit.guards.guard`, or a function that returns a `Verdict`."""
    if hasattr(function, "__aikit_guard_stage__"):
        return True
    try:
        returns = inspect.signature(function).return_annotation
    except (TypeError, ValueError):
        return False
    return "Verdict" in str(getattr(returns, "__name__", returns))


def _stage(guard: Callable[..., Any]) -> str:
    """`input` for a guard of requests only; `output` (the answer) for every other."""
    from aikit.guards import as_guards

    return "output" if as_guards([guard]).output else "input"


def for_endpoint(function: Callable[..., Any], names: Sequence[str]) -> list[Scorer]:
    """An endpoint's scorers: those of `@aikit.endpoint(score=...)`, then `--score`."""
    from aikit.api._marker import ATTRIBUTE

    marked = getattr(getattr(function, ATTRIBUTE, None), "score", None) or []
    listed = [marked] if isinstance(marked, str) or callable(marked) else list(marked)
    found = [as_scorer(s) for s in listed] + [by_name(n) for n in names]
    return list({s.name: s for s in found}.values())  # `--score` overrides the marker's rate


def parse_alert(spec: str) -> tuple[str, float]:
    """`--alert METRIC<VALUE` as (metric, threshold)."""
    match = _ALERT.fullmatch(spec)
    value = math.nan
    if match is not None:
        with contextlib.suppress(ValueError):
            value = float(match.group(2))
    if match is None or not math.isfinite(value):
        raise ApiError(
            f"--alert {spec!r}: write METRIC<VALUE with a number, e.g. --alert 'faithfulness<0.7'"
        )
    return match.group(1), value


def sampled(row_id: str, metric: str, rate: float) -> bool:
    """Whether the request `row_id` is in `metric`'s sample (the same answer every time)."""
    if rate >= 1.0:
        return True
    import hashlib

    digest = hashlib.blake2b(f"{metric}:{row_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64 < rate


@dataclass
class Job:
    """One answered request to score: its ids, model, validated input, result(s) and the
    span context it was admitted under."""

    row_id: str
    request_id: str
    endpoint: str
    model: str | None
    results: list[tuple[dict[str, Any], Any]]
    scorers: list[Scorer]
    span_context: Any = None


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def compute(scorer: Scorer, request: dict[str, Any], result: Any) -> tuple[float | None, str]:
    """The score of one answer, and its detail."""
    is_answer = all(hasattr(result, a) for a in ("question", "text", "context", "citations"))
    if scorer.stage is not None:
        strings = [v for v in request.values() if isinstance(v, str)]
        text = "\n".join(strings) if scorer.stage == "input" else _text_of(_plain(result))
        verdict = scorer.function(text)
        found = verdict.action != "allow"
        reasons = f": {', '.join(verdict.reasons)}" if verdict.reasons else ""
        return (0.0 if found else 1.0), f"{verdict.action}{reasons}"
    output: Any = result.text if is_answer else _plain(result)
    question = (
        result.question
        if is_answer
        else next((v for v in request.values() if isinstance(v, str)), None)
    )
    offered = {
        "context": result.context if is_answer else None,
        "question": question,
        "input": question if is_answer else request,
    }
    from aikit.evals import Judge

    if isinstance(scorer.function, Judge):
        judgement = scorer.function.judgement(output, None, input=offered["input"])
        return judgement.score, judgement.reason
    try:
        params = inspect.signature(scorer.function).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    kwargs = {k: v for k, v in offered.items() if k in params}
    value = scorer.function(output, **kwargs)
    if value is None:
        return None, "unscored"
    return float(value), ""


def _plain(result: Any) -> Any:
    """A result as JSON-able data (a pydantic model or dataclass as a dict)."""
    if hasattr(result, "model_dump"):
        return result.model_dump(mode="json")
    import dataclasses

    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {k: v for k, v in dataclasses.asdict(result).items() if k not in ("reply",)}
    return result


@dataclass
class _Window:
    values: deque[float] = field(default_factory=lambda: deque(maxlen=ALERT_WINDOW))
    alerting: bool = False


class LiveScoring:
    """The background thread that scores answered requests and writes their scores."""

    def __init__(self, log: RequestLog, alerts: Sequence[tuple[str, float]] = ()) -> None:
        from opentelemetry import metrics, trace

        self.log, self.alerts = log, list(alerts)
        self.dropped = 0
        self._queue: queue.Queue[Job | None] = queue.Queue(QUEUE_SIZE)
        self._windows: dict[tuple[str, str], _Window] = {}
        self._tracer = trace.get_tracer("aikit")
        meter = metrics.get_meter("aikit")
        self._histogram = meter.create_histogram(
            "aikit.live_score", description="live scores of aikit api requests"
        )
        self._alert_counter = meter.create_counter(
            "aikit.live_score_alerts", description="rolling means of live scores below --alert"
        )
        self._thread = threading.Thread(target=self._worker, name="aikit-score", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue `job` without waiting; a full queue drops it (counted, and said)."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            if self.dropped % 100 == 1:
                print(
                    f"aikit api: warning: score queue full ({QUEUE_SIZE} requests waiting);"
                    f" {self.dropped} requests not scored so far: lower the --score rate",
                    file=sys.stderr,
                    flush=True,
                )

    def _worker(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            for scorer in job.scorers:
                for request, result in job.results:
                    self._score(job, scorer, request, result)

    def _score(self, job: Job, scorer: Scorer, request: dict[str, Any], result: Any) -> None:
        from opentelemetry import trace

        context = None
        if job.span_context is not None and job.span_context.is_valid:
            context = trace.set_span_in_context(trace.NonRecordingSpan(job.span_context))
        attributes = {"aikit.score.metric": scorer.name, "aikit.score.model": job.model or ""}
        with self._tracer.start_as_current_span(
            f"score {scorer.name}", context=context, attributes=attributes
        ) as span:
            try:
                value, detail = compute(scorer, request, result)
            except Exception as exc:  # a failing metric leaves this answer unscored
                value, detail = None, f"unscored: {type(exc).__name__}: {str(exc)[:200]}"
            if value is not None:
                span.set_attribute("aikit.score.value", value)
        self.log.write_score(
            ScoreRow(
                job.row_id,
                job.request_id,
                time.time(),
                job.endpoint,
                job.model,
                scorer.name,
                value,
                detail or None,
            )
        )
        if value is not None:
            labels = {"metric": scorer.name, "endpoint": job.endpoint}
            self._histogram.record(value, labels)
            self._watch(job.endpoint, scorer.name, value)

    def _watch(self, endpoint: str, metric: str, value: float) -> None:
        for name, threshold in self.alerts:
            if name != metric:
                continue
            window = self._windows.setdefault((endpoint, metric), _Window())
            window.values.append(value)
            if len(window.values) < ALERT_MIN:
                continue
            mean = sum(window.values) / len(window.values)
            if mean >= threshold:
                window.alerting = False
            elif not window.alerting:
                window.alerting = True
                self._alert_counter.add(1, {"metric": metric, "endpoint": endpoint})
                print(
                    f"aikit api: warning: {metric} of /{endpoint} is {mean:.3f}, below"
                    f" {threshold:g} (rolling mean of the last {len(window.values)} scores)",
                    file=sys.stderr,
                    flush=True,
                )

    def close(self, timeout: float = 5.0) -> None:
        """Score what is queued (for up to `timeout` seconds), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
