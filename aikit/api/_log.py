"""The request log: one row per request to an endpoint of `aikit api`, in SQLite under
`AIKIT_HOME` (`requests.sqlite`, WAL: every worker process of a server writes to it at once),
or wherever `AIKIT_REQUEST_LOG` says: another SQLite file, or one PostgreSQL database for every
worker and machine (`aikit/api/_logdb.py`, `aikit/api/_logpg.py`).

A row: request id, time, endpoint, kind (`call`, `batch`, `stream`), HTTP status, latency,
the model calls the request made (model, tokens, cost, whether every answer came from the
response store), the error, and the request's input and output as JSON. Never the bearer token
or a secret parameter: every form of each (as is, JSON-escaped, in a `repr`) is replaced by
`secret:NAME` before a row is queued. Two requests sent with the same `X-Request-ID` are two
rows (each row has its own `row_id`).

A request gets its row when it is admitted (status 0, `IN_FLIGHT` as its error), and the row is
completed when it ends: a request whose worker was killed keeps status 0, so the log shows
the requests that were lost. Rows are written by one background thread per process, in small
transactions, so logging adds no disk wait to a request; a process killed with SIGKILL loses
at most the rows of its last few milliseconds.

A row also has the request's trace id (when an OpenTelemetry SDK traces it) and the machine's
name (`host`). Live scores (`aikit api --score`, `aikit/api/_scoring.py`) are rows of their own
table, written by the same thread; `requests()` gives them as a `scores` column and `scores()`
one row per score.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aikit._scrub import Scrubber
from aikit.api._logdb import SCORE_COLUMNS, Store, Target, open_store, target_of
from aikit.costs import Call, total_usage

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("aikit.api")

MAX_TEXT = 65_536  # characters of input/output kept per request
IN_FLIGHT = "no answer yet: in flight, or its worker stopped before answering"


@dataclass(frozen=True)
class Row:
    """One logged request (the table's columns; `row_id` is the server's own key)."""

    row_id: str
    request_id: str
    time: float
    endpoint: str
    kind: str
    status: int
    latency_s: float
    model: str | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    cached: bool | None
    error: str | None
    input: str | None
    output: str | None
    worker: int
    guards: str | None = None
    trace_id: str | None = None
    host: str | None = None


@dataclass(frozen=True)
class ScoreRow:
    """One live score of a request (`value` None: the metric left it unscored)."""

    row_id: str
    request_id: str
    time: float
    endpoint: str
    model: str | None
    metric: str
    value: float | None
    detail: str | None = None


def usage_of(calls: Sequence[Call]) -> dict[str, Any]:
    """Model, calls, tokens, cost (None if any call was unpriced) and cached of a request
    (`aikit.costs.total_usage`, the one sum; "calls" as its module docstring defines)."""
    total = total_usage(calls)
    return {
        "model": ", ".join(total["models"]) or None,
        "calls": total["calls"],
        "prompt_tokens": total["prompt_tokens"],
        "completion_tokens": total["completion_tokens"],
        "cost_usd": total["cost_usd"],
        "cached": all(c.cached for c in calls) if calls else None,
    }


def clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_TEXT]


def log_target(home: Path | None = None, log: str | Path | None = None) -> Target:
    """Where the log is: `log` (a path or URL), else `AIKIT_REQUEST_LOG`, else SQLite under
    `home` (default: the settings' AIKIT_HOME)."""
    from aikit.settings import get_settings

    settings = get_settings()
    if log is None and home is None:
        log = settings.request_log
    return target_of(log, home if home is not None else settings.home)


COLUMNS = [f.name for f in fields(Row)]


class RequestLog:
    """Writes rows from a background thread; `write` never blocks a request."""

    def __init__(self, target: Target, scrubber: Scrubber | None = None) -> None:
        self.target = target
        self.store: Store = open_store(target, COLUMNS)
        self.store.connect()  # create and migrate now: a bad log location fails at start-up
        self.scrubber = scrubber or Scrubber({})
        self._queue: queue.SimpleQueue[Row | ScoreRow | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer, name="aikit-request-log", daemon=True)
        self._thread.start()

    def write(self, row: Row) -> None:
        """Queue `row` (its text fields scrubbed of every secret); an earlier row with the same
        `row_id` is replaced."""
        scrub = self.scrubber.text
        if self.scrubber:
            row = replace(
                row,
                error=row.error and scrub(row.error),
                input=row.input and scrub(row.input),
                output=row.output and scrub(row.output),
            )
        self._queue.put(row)

    def write_score(self, score: ScoreRow) -> None:
        """Queue one live score (its detail scrubbed of every secret)."""
        if self.scrubber and score.detail:
            score = replace(score, detail=self.scrubber.text(score.detail))
        self._queue.put(score)

    def _writer(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:  # everything that is waiting goes in one transaction
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in items
            rows = [astuple(r) for r in items if isinstance(r, Row)]
            scores = [astuple(s) for s in items if isinstance(s, ScoreRow)]
            if rows or scores:
                try:
                    self.store.write(rows, scores)
                except Exception:  # a full disk must not stop the thread: say so, go on
                    logger.exception("aikit api: %d log rows not written", len(items))
            if stop:
                return

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)
        self.store.close()


def _since(since: float | str | None) -> float | None:
    if since is None:
        return None
    import pandas as pd

    return float(since if isinstance(since, int | float) else pd.Timestamp(since).timestamp())


def _read(
    table: str,
    columns: list[str],
    endpoint: str | None,
    since: float | str | None,
    home: str | Path | None,
    log: str | Path | None,
) -> list[tuple[Any, ...]]:
    store = open_store(log_target(None if home is None else Path(home), log), COLUMNS)
    if not store.exists():
        return []
    try:
        return store.select(table, columns, endpoint, _since(since))
    finally:
        store.close()


def _means(per_metric: dict[str, list[float]]) -> dict[str, float | None]:
    """A row's score per metric: the mean over a batch's items; None if all were unscored."""
    return {m: (sum(v) / len(v) if v else None) for m, v in per_metric.items()}


def requests(
    endpoint: str | None = None,
    *,
    since: float | str | None = None,
    home: str | Path | None = None,
    log: str | Path | None = None,
) -> pd.DataFrame:
    """The request log of `aikit api` as a DataFrame, oldest first.

    Args:
        endpoint: only this endpoint's requests.
        since: only requests at or after this time (Unix seconds or an ISO date string).
        home: the `AIKIT_HOME` whose SQLite log to read (default: the current settings').
        log: the log to read instead: a path, `sqlite:///PATH` or `postgresql://...` URL
            (default: `AIKIT_REQUEST_LOG`, else the SQLite log under `home`).

    Columns: request_id, time (UTC), endpoint, kind, status, latency_s, model, calls,
    prompt_tokens, completion_tokens, cost_usd, cached, error, input, output (JSON text),
    worker (process id), guards (the guards' verdicts as JSON: stage, guard, action, score,
    reasons, latency_ms; None for an endpoint without guards), trace_id (32 hex digits when an
    OpenTelemetry SDK traced the request, else None), host (the machine), scores (the live
    scores of `aikit api --score`, `{metric: value}`, a batch's mean over its items; empty
    when not scored). Status 0: the
    request was admitted and never answered (still in flight, or its worker was killed).
    """
    import pandas as pd

    columns = [c for c in COLUMNS if c != "row_id"]
    rows = _read("requests", ["row_id", *columns], endpoint, since, home, log)
    frame = pd.DataFrame([r[1:] for r in rows], columns=columns)
    found: dict[str, dict[str, list[float]]] = {}
    if rows:
        for row_id, metric, value in _read(
            "scores", ["row_id", "metric", "value"], endpoint, since, home, log
        ):
            values = found.setdefault(row_id, {}).setdefault(metric, [])
            if value is not None:
                values.append(float(value))
    frame["scores"] = pd.Series([_means(found.get(r[0], {})) for r in rows], dtype=object)
    frame["time"] = pd.to_datetime(frame["time"].astype(float), unit="s", utc=True)
    frame["cached"] = frame["cached"].map(lambda v: None if pd.isna(v) else bool(v)).astype(object)
    return frame


def scores(
    endpoint: str | None = None,
    *,
    since: float | str | None = None,
    home: str | Path | None = None,
    log: str | Path | None = None,
) -> pd.DataFrame:
    """The live scores of `aikit api --score`, one row per score, oldest first.

    Columns: time (UTC, when the score was computed), request_id, endpoint, model, metric,
    value (None: the metric left the request unscored), detail (e.g. a judge's reason or a
    guard's action). Arguments as for `requests()`.
    """
    import pandas as pd

    columns = [c for c in SCORE_COLUMNS if c != "row_id"]
    frame = pd.DataFrame(_read("scores", columns, endpoint, since, home, log), columns=columns)
    frame["time"] = pd.to_datetime(frame["time"].astype(float), unit="s", utc=True)
    frame["value"] = frame["value"].astype(float)
    return frame[["time", *[c for c in columns if c != "time"]]]


def parse(text: str | None) -> Any:
    """A logged input or output, back from its JSON text (None stays None)."""
    return None if text is None else json.loads(text)


def now() -> float:
    return time.time()
