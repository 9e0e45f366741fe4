"""Live scores (`aikit api --score`, `@aikit.endpoint(score=...)`): real uvicorn on 127.0.0.1,
httpx calls, a judge on a loopback OpenAI-compatible server (`judge_server.py`) that can be
held, so the tests see that an answer goes out before its score is computed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from judge_server import JudgeServer

import aikit
from aikit import evals
from aikit.api import ApiClient, serving
from aikit.api._log import COLUMNS, RequestLog
from aikit.api._logdb import open_store, target_of
from aikit.api._scoring import Job, LiveScoring, Scorer, sampled
from aikit.errors import DatasetError

pytest.importorskip("fastapi_offline", reason="aikit api needs `pip install aikit[api]`")

RAG_CODE = """\
import aikit
from aikit import evals, rag
from aikit.settings import Settings

judge_settings = Settings.resolve(
    dotenv=None, provider="openai", base_url=judge_url, api_key="unused-test-key",
    model="judge-model", cache="off", max_retries=0,
)
checker = evals.judge("The passages support the claim.", settings=judge_settings)


def faithfulness(output, *, context, question=None):
    return evals.faithfulness(output, context=context, question=question, judge=checker)


PASSAGES = [{"text": "Employees get 600 euros to set up a home office."}]


@aikit.endpoint(score=[faithfulness])
def ask(question: str) -> rag.Answer:
    text = "Employees get 600 euros for a home office. The money is paid in cash."
    return rag.Answer(question=question, text=text, found=True, context=PASSAGES)


@aikit.endpoint
def echo(text: str) -> str:
    return text
"""


def _notebook(folder: Path, code: str, parameters: str = "") -> Path:
    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_code_cell(code)]
    if parameters:
        cells.insert(0, nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells = cells
    path = folder / "scored.ipynb"
    nbformat.write(nb, path)
    return path


def _until(what: Callable[[], Any], timeout: float = 60) -> Any:
    """`what()` once it is truthy (the state a test waits for, however busy the machine)."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value is not None and (len(value) if hasattr(value, "__len__") else value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        time.sleep(0.05)


class HeldJudge(JudgeServer):
    """A judge that answers only once `gate` is set; `arrived` counts the requests."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.arrived = 0

    def next_reply(self, request: dict[str, Any]) -> Any:
        with self.lock:
            self.arrived += 1
        self.gate.wait(120)
        return super().next_reply(request)


def test_a_rag_answer_is_scored_after_its_answer_has_gone_out(tmp_path: Path) -> None:
    judge = HeldJudge().start()
    notebook = _notebook(tmp_path, RAG_CODE, 'judge_url: str = ""  # the judge server\n')
    try:
        with serving(
            notebook,
            parameters={"judge_url": judge.base_url},
            env={"AIKIT_HOME": str(tmp_path / "home")},
        ) as api:
            # The judge holds every verdict: an answer that waited for its score never comes.
            r = api.post("/ask", json={"question": "What do I get for a home office?"}, timeout=20)
            assert r.status_code == 200, r.text
            assert r.json()["text"].startswith("Employees get 600 euros")
            request_id = r.headers["x-request-id"]
            _until(lambda: judge.arrived)  # the score is being computed now, held by the judge
            row = _until(lambda: api.requests().query("status != 0"))
            assert list(row["status"]) == [200] and api.scores().empty
            assert row["scores"].iloc[0] == {} and row["trace_id"].iloc[0] is None
            assert api.post("/echo", json={"text": "not scored"}).status_code == 200
            judge.gate.set()
            scores = _until(api.scores)
            log = _until(lambda: api.requests().query("status != 0 and endpoint == 'echo'"))
        # One claim of two is in the passage (the judge's rule); the echo endpoint is unscored.
        assert list(scores["metric"]) == ["faithfulness"] and list(scores["value"]) == [0.5]
        assert list(scores["request_id"]) == [request_id] and list(scores["endpoint"]) == ["ask"]
        assert scores["time"].iloc[0] > row["time"].iloc[0]
        assert judge.arrived == 2  # one verdict per claim
        full = api.requests()
        assert list(full["scores"]) == [{"faithfulness": 0.5}, {}]
        assert list(log["endpoint"]) == ["echo"]
    finally:
        judge.gate.set()
        judge.stop()


ECHO_CODE = """\
import aikit


@aikit.endpoint
def echo(text: str) -> str:
    return text
"""


@pytest.fixture(scope="module")
def alerting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiClient]:
    folder = tmp_path_factory.mktemp("alert")
    with serving(
        _notebook(folder, ECHO_CODE),
        args=["--score", "json_valid", "--alert", "json_valid<0.5"],
        env={"AIKIT_HOME": str(folder / "home")},
    ) as api:
        yield api


def test_alert_warns_once_when_the_rolling_mean_falls_below(alerting: ApiClient) -> None:
    sent = [f'{{"n": {i}}}' for i in range(5)] + [f"not json {i}" for i in range(8)]
    for i, text in enumerate(sent):
        r = alerting.post("/echo", json={"text": text}, headers={"X-Request-ID": f"a-{i}"})
        assert r.status_code == 200
    scores = _until(lambda: alerting.scores().pipe(lambda f: f if len(f) == 13 else None))
    assert list(scores["value"]) == [1.0] * 5 + [0.0] * 8
    warnings = [line for line in alerting.output().splitlines() if "warning: json_valid" in line]
    # 5 valid, then the 6th invalid answer takes the mean of 11 scores to 5/11 < 0.5: one line.
    assert warnings == [
        "aikit api: warning: json_valid of /echo is 0.455, below 0.5 (rolling mean of the last"
        " 11 scores)"
    ]


def test_the_lowest_scored_requests_become_eval_items(alerting: ApiClient) -> None:
    _until(lambda: alerting.scores().pipe(lambda f: f if len(f) >= 13 else None))
    log = alerting.requests()
    worst = evals.Dataset.from_requests(
        log, endpoint="echo", input_field="text", lowest=3, by="json_valid"
    )
    assert [i.id for i in worst] == ["a-5", "a-6", "a-7"]
    assert [i.input for i in worst] == ["not json 0", "not json 1", "not json 2"]
    assert all(i.metadata["json_valid"] == 0.0 for i in worst)
    with pytest.raises(DatasetError, match="no answered request has a live 'faithfulness'"):
        evals.Dataset.from_requests(log, lowest=3, by="faithfulness")
    with pytest.raises(DatasetError, match="pass both"):
        evals.Dataset.from_requests(log, lowest=3)


def test_an_alert_on_a_metric_no_endpoint_scores_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "aikit.cli", "api", str(_notebook(tmp_path, ECHO_CODE))),
            *("--score", "json_valid", "--alert", "faithfulness<0.7"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"AIKIT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert done.stderr.startswith("aikit: error: --alert faithfulness<...: no endpoint scores")
    assert "add --score faithfulness" in done.stderr and done.stderr.count("\n") == 1


def test_a_full_score_queue_drops_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("aikit.api._scoring.QUEUE_SIZE", 2)
    release = threading.Event()

    def slow(output: Any) -> float:
        release.wait(30)
        return 1.0

    log = RequestLog(target_of(None, tmp_path))
    scoring = LiveScoring(log)
    scorer = Scorer("slow", 1.0, slow)
    try:
        for i in range(6):  # one being scored, two waiting, the rest dropped
            scoring.submit(Job(f"r{i}", f"q{i}", "echo", None, [({}, "x")], [scorer]))
            if i == 0:
                _until(lambda: scoring._queue.empty() or None)
        assert scoring.dropped == 3
        err = capsys.readouterr().err
        assert err.count("score queue full") == 1 and "1 requests not scored so far" in err
    finally:
        release.set()
        scoring.close()
        log.close()
    store = open_store(target_of(None, tmp_path), COLUMNS)
    written = store.select("scores", ["request_id", "metric", "value"], None, None)
    store.close()
    assert sorted(written) == [("q0", "slow", 1.0), ("q1", "slow", 1.0), ("q2", "slow", 1.0)]


def test_the_sample_is_a_fixed_share_of_the_row_ids() -> None:
    ids = [f"{i:032x}" for i in range(4000)]
    picked = [sampled(i, "faithfulness", 0.1) for i in ids]
    assert 0.08 < sum(picked) / len(ids) < 0.12
    assert picked == [sampled(i, "faithfulness", 0.1) for i in ids]  # the same every time
    assert all(sampled(i, "faithfulness", 1.0) for i in ids[:50])


def test_an_old_sqlite_log_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    from aikit.api._logdb import SQLITE_MIGRATIONS

    conn = sqlite3.connect(tmp_path / "requests.sqlite")
    for sql in SQLITE_MIGRATIONS[:10]:  # the schema before trace ids and scores
        conn.execute(sql)
    conn.execute("PRAGMA user_version = 10")
    conn.execute(
        "INSERT INTO requests (row_id, request_id, time, endpoint, kind, status, latency_s,"
        " calls, prompt_tokens, completion_tokens, worker)"
        " VALUES ('r1', 'q1', 1.0, 'ask', 'call', 200, 0.1, 0, 0, 0, 7)"
    )
    conn.commit()
    conn.close()
    frame = aikit.requests(home=tmp_path)
    assert list(frame["request_id"]) == ["q1"] and list(frame["worker"]) == [7]
    assert frame["trace_id"].isna().all() and list(frame["scores"]) == [{}]
    version = sqlite3.connect(tmp_path / "requests.sqlite").execute("PRAGMA user_version")
    assert version.fetchone()[0] == len(SQLITE_MIGRATIONS)


def test_live_scores_per_period_beside_the_nightly_series() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from aikit.api import live_scores, plot_live_scores

    times = pd.to_datetime([0, 600, 4000, 4100, 4200], unit="s", utc=True)
    frame = pd.DataFrame(
        {
            "time": times,
            "request_id": ["a", "b", "c", "d", "e"],
            "endpoint": ["ask"] * 5,
            "model": ["m1", "m1", "m1", "m2", "m1"],
            "metric": ["faithfulness"] * 5,
            "value": [1.0, 0.5, None, 0.25, 0.0],
            "detail": [None] * 5,
        }
    )
    live = live_scores("faithfulness", scores=frame, freq="1h")
    assert [tuple(r) for r in live[["model", "mean", "n", "unscored"]].itertuples(index=False)] == [
        ("m1", 0.75, 2, 0),
        ("m1", 0.0, 1, 1),
        ("m2", 0.25, 1, 0),
    ]
    nightly = aikit.runs(Path(__file__).parents[1] / "notebooks/data/monitoring", "eval-nightly")
    fig = plot_live_scores(live, nightly, metric="faithfulness", nightly_metric="accuracy",
                           threshold=0.7)  # fmt: skip
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    assert len(fig.axes) == 2
    for ax in fig.axes:
        dashed = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert 0.7 in dashed
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer))  # outside the axes
    assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} >= {
        "/ask · m1",
        "/ask · m2",
        "threshold 0.7",
    }


def test_each_score_is_a_span_in_its_request_trace(tmp_path: Path) -> None:
    """With an OpenTelemetry SDK (the `[otel]` extra), a score is a span `score {metric}` whose
    parent is the span the request was admitted under."""
    pytest.importorskip("opentelemetry.sdk", reason="needs the OpenTelemetry SDK ([otel])")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    log = RequestLog(target_of(None, tmp_path))
    scoring = LiveScoring(log)
    scoring._tracer = provider.get_tracer("aikit")  # this test's SDK, not the global one
    with provider.get_tracer("test").start_as_current_span("POST /echo") as request_span:
        context = request_span.get_span_context()
    job = Job(
        "r1", "q1", "echo", "m1", [({}, '{"a": 1}')], [Scorer("json_valid", 1.0, evals.json_valid)]
    )
    job.span_context = context
    scoring.submit(job)
    spans = _until(lambda: [s for s in exporter.get_finished_spans() if s.name != "POST /echo"])
    scoring.close()
    log.close()
    (span,) = spans
    assert span.name == "score json_valid" and span.parent is not None
    assert span.parent.span_id == context.span_id and span.context.trace_id == context.trace_id
    assert dict(span.attributes or {}) == {
        "aikit.score.metric": "json_valid",
        "aikit.score.model": "m1",
        "aikit.score.value": 1.0,
    }
