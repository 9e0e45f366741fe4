"""Where the request log lives: `AIKIT_REQUEST_LOG` is a path or a database URL.

- unset: SQLite, `$AIKIT_HOME/requests.sqlite` (WAL; every worker process of a server writes
  to it at once; the schema is `PRAGMA user_version`, migrated by `SQLITE_MIGRATIONS`);
- a path, or `sqlite:///relative/path` / `sqlite:////absolute/path` (SQLAlchemy's spelling):
  SQLite there;
- `postgresql://USER:PASSWORD@HOST:PORT/DB` (or `postgres://`): PostgreSQL through psycopg 3,
  one log for every worker and machine (`aikit/api/_logpg.py`).

Both stores have the same two tables and answer the same queries: `requests` (one row per
request, keyed by the server's `row_id`) and `scores` (one row per live score of a request,
`aikit/api/_scoring.py`). A store is opened by the writer thread of `RequestLog` and by
`aikit.requests()`; `rows(...)` and `scores(...)` give plain tuples in the columns asked for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aikit._sqlite import SQLiteFile, transaction
from aikit.errors import ConfigError

FILENAME = "requests.sqlite"
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
SCORE_COLUMNS = ("row_id", "request_id", "time", "endpoint", "model", "metric", "value", "detail")
SQLITE_MIGRATIONS = [
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
    # 4: the request's trace, the machine, and live scores (one row per score of a request)
    "ALTER TABLE requests ADD COLUMN trace_id TEXT",  # W3C trace id (32 hex), if traced
    "ALTER TABLE requests ADD COLUMN host TEXT",  # the machine's name (worker is its pid)
    "CREATE TABLE scores (row_id TEXT NOT NULL, request_id TEXT NOT NULL, time REAL NOT NULL,"
    " endpoint TEXT NOT NULL, model TEXT, metric TEXT NOT NULL, value REAL, detail TEXT)",
    "CREATE INDEX scores_row_id ON scores (row_id)",
    "CREATE INDEX scores_time ON scores (time)",
]
_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def shown(url: str) -> str:
    """A URL as errors show it: the password replaced by `***`."""
    return _PASSWORD.sub(r"\1***@", url)


@dataclass(frozen=True)
class Target:
    """Where the log is: `kind` `sqlite` (with `path`) or `postgresql` (with `url`)."""

    kind: str
    path: Path | None = None
    url: str | None = None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else shown(self.url or "")


def target_of(value: str | Path | None, home: Path) -> Target:
    """The log that `AIKIT_REQUEST_LOG=value` names (None or empty: SQLite under `home`)."""
    if value is None or not str(value).strip():
        return Target("sqlite", path=home / FILENAME)
    text = str(value).strip()
    match = _URL.match(text)
    if match is None:
        return Target("sqlite", path=Path(text).expanduser())
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        rest = text[len("sqlite:///") :] if text.lower().startswith("sqlite:///") else ""
        if not rest:
            raise ConfigError(
                f"AIKIT_REQUEST_LOG={text!r} names no file; use sqlite:///requests.sqlite"
                " (relative) or sqlite:////var/lib/aikit/requests.sqlite (absolute)"
            )
        return Target("sqlite", path=Path(rest).expanduser())
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return Target("postgresql", url="postgresql://" + text.split("://", 1)[1])
    raise ConfigError(
        f"AIKIT_REQUEST_LOG={shown(text)!r} is not a request log aikit can write; use a path,"
        " sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"
    )


class Store(Protocol):
    """A request log's database, as the writer thread and the readers use it."""

    def connect(self) -> Any:
        """Open (create and migrate) the database now."""

    def write(self, rows: Sequence[tuple[Any, ...]], scores: Sequence[tuple[Any, ...]]) -> None:
        """Upsert `rows` (every column of `Row`, in order) and insert `scores`, at once."""

    def select(
        self, table: str, columns: Sequence[str], endpoint: str | None, since: float | None
    ) -> list[tuple[Any, ...]]:
        """`columns` of `table` (`requests` or `scores`), oldest first."""

    def exists(self) -> bool:
        """Whether there is a log to read yet (a SQLite file that was never written: no)."""

    def close(self) -> None: ...


def where(endpoint: str | None, since: float | None, mark: str) -> tuple[str, list[Any]]:
    """The WHERE clause (with `mark` placeholders) and its arguments."""
    clauses: list[str] = []
    args: list[Any] = []
    if endpoint is not None:
        clauses.append(f"endpoint = {mark}")
        args.append(endpoint)
    if since is not None:
        clauses.append(f"time >= {mark}")
        args.append(float(since))
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), args


class SQLiteStore:
    """The embedded log: one SQLite file (see `aikit._sqlite`)."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.file = SQLiteFile(
            path,
            what="request log",
            fix="check AIKIT_HOME (or AIKIT_REQUEST_LOG) is writable, or move the file away to"
            " start a new log",
            migrations=SQLITE_MIGRATIONS,
        )

    def connect(self) -> None:
        self.file.connect()

    def write(self, rows: Sequence[tuple[Any, ...]], scores: Sequence[tuple[Any, ...]]) -> None:
        conn = self.file.connect()
        with self.file.errors(), transaction(conn):
            if rows:
                names, marks = ", ".join(self.columns), ", ".join("?" for _ in self.columns)
                sql = f"INSERT OR REPLACE INTO requests ({names}) VALUES ({marks})"
                conn.executemany(sql, rows)
            if scores:
                marks = ", ".join("?" for _ in SCORE_COLUMNS)
                conn.executemany(
                    f"INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) VALUES ({marks})", scores
                )

    def select(
        self, table: str, columns: Sequence[str], endpoint: str | None, since: float | None
    ) -> list[tuple[Any, ...]]:
        clause, args = where(endpoint, since, "?")
        sql = f"SELECT {', '.join(columns)} FROM {table}{clause} ORDER BY time"
        with self.file.errors():
            return list(self.file.connect().execute(sql, args).fetchall())

    def exists(self) -> bool:
        return self.file.path.exists()

    def close(self) -> None:
        self.file.close()


def open_store(target: Target, columns: Sequence[str]) -> Store:
    """The store of `target`; `columns` are the `requests` table's, in `Row` order."""
    if target.kind == "sqlite":
        assert target.path is not None
        return SQLiteStore(target.path, columns)
    from aikit.api._logpg import PostgresStore

    assert target.url is not None
    return PostgresStore(target.url, columns)
