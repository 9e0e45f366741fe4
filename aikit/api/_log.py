"""The request log: one row per request to an endpoint of `aikit api`, in SQLite under
`AIKIT_HOME` (`requests.sqlite`, WAL: every worker process of a server writes to it at once).

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
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aikit._scrub import Scrubber
from aikit._sqlite import SQLiteFile, transaction
from aikit.costs import Call, total_usage

if TYPE_CHECKING:
    import pandas as pd

FILENAME = "requests.sqlite"
MAX_TEXT = 65_536  # characters of input/output kept per request
_COLUMNS = """
        request_id TEXT PRIMARY KEY,
        time REAL NOT NULL,
        endpoint TEXT NOT NULL,
        kind TEXT NOT NULL,
        status INTEGER NOT NULL,
        latency_s REAL NOT NULL,
        model TEXT,
        calls INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost_usd REAL,
        cached INTEGER,
        error TEXT,
        input TEXT,
        output TEXT,
        worker INTEGER
"""
MIGRATIONS = [
    f"CREATE TABLE requests ({_COLUMNS})",
    "CREATE INDEX requests_time ON requests (time)",
    # 2: a row id of the server's own (the same X-Request-ID twice is two rows)
    "DROP INDEX requests_time",
    "ALTER TABLE requests RENAME TO requests_v1",
    "CREATE TABLE requests (row_id TEXT PRIMARY KEY,"
    f" {_COLUMNS.replace(' PRIMARY KEY', ' NOT NULL')})",
    "INSERT INTO requests SELECT request_id, * FROM requests_v1",
    "DROP TABLE requests_v1",
    "CREATE INDEX requests_time ON requests (time)",
    "CREATE INDEX requests_request_id ON requests (request_id)",
    # 3: the guards' verdicts
    "ALTER TABLE requests ADD COLUMN guards TEXT",  # the guards' verdicts (JSON), if any
]
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


def open_log(home: Path) -> SQLiteFile:
    return SQLiteFile(
        home / FILENAME,
        what="request log",
        fix="check AIKIT_HOME is writable, or move the file away to start a new log",
        migrations=MIGRATIONS,
    )


class RequestLog:
    """Writes rows from a background thread; `write` never blocks a request."""

    def __init__(self, home: Path, scrubber: Scrubber | None = None) -> None:
        self.file = open_log(home)
        self.file.connect()  # create and migrate now: a bad AIKIT_HOME fails at start-up
        self.scrubber = scrubber or Scrubber({})
        self._queue: queue.SimpleQueue[Row | None] = queue.SimpleQueue()
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

    def _writer(self) -> None:
        columns = ", ".join(f.name for f in fields(Row))
        marks = ", ".join("?" for _ in fields(Row))
        sql = f"INSERT OR REPLACE INTO requests ({columns}) VALUES ({marks})"
        while True:
            rows = [self._queue.get()]
            while True:  # everything that is waiting goes in one transaction
                try:
                    rows.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in rows
            batch = [astuple(r) for r in rows if r is not None]
            if batch:
                conn = self.file.connect()
                with transaction(conn):
                    conn.executemany(sql, batch)
            if stop:
                return

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)
        self.file.close()


def requests(
    endpoint: str | None = None,
    *,
    since: float | str | None = None,
    home: str | Path | None = None,
) -> pd.DataFrame:
    """The request log of `aikit api` as a DataFrame, oldest first.

    Args:
        endpoint: only this endpoint's requests.
        since: only requests at or after this time (Unix seconds or an ISO date string).
        home: the `AIKIT_HOME` whose log to read (default: the current settings').

    Columns: request_id, time (UTC), endpoint, kind, status, latency_s, model, calls,
    prompt_tokens, completion_tokens, cost_usd, cached, error, input, output (JSON text),
    worker (process id), guards (the guards' verdicts as JSON: stage, guard, action, score,
    reasons, latency_ms; None for an endpoint without guards). Status 0: the request was
    admitted and never answered (still in flight, or its worker was killed).
    """
    import pandas as pd

    from aikit.settings import get_settings

    folder = Path(home) if home is not None else get_settings().home
    columns = [f.name for f in fields(Row) if f.name != "row_id"]
    if not (folder / FILENAME).exists():
        frame = pd.DataFrame(columns=columns)
    else:
        where: list[str] = []
        args: list[Any] = []
        if endpoint is not None:
            where.append("endpoint = ?")
            args.append(endpoint)
        if since is not None:
            start = since if isinstance(since, int | float) else pd.Timestamp(since).timestamp()
            where.append("time >= ?")
            args.append(float(start))
        sql = f"SELECT {', '.join(columns)} FROM requests"
        sql += f" WHERE {' AND '.join(where)}" if where else ""
        log = open_log(folder)
        try:
            rows = log.connect().execute(sql + " ORDER BY time", args).fetchall()
        finally:
            log.close()
        frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = pd.to_datetime(frame["time"].astype(float), unit="s", utc=True)
    frame["cached"] = frame["cached"].map(lambda v: None if pd.isna(v) else bool(v)).astype(object)
    return frame


def parse(text: str | None) -> Any:
    """A logged input or output, back from its JSON text (None stays None)."""
    return None if text is None else json.loads(text)


def now() -> float:
    return time.time()
