"""The request log on PostgreSQL (`AIKIT_REQUEST_LOG=postgresql://...`), through psycopg 3.

Every worker process of every machine writes to the same two tables (`requests`, `scores`;
the same columns as the SQLite log). The schema is aikit's: created and migrated at start-up
under a transaction-scoped advisory lock, so servers that start together migrate it once;
each applied step is a row of `aikit_schema` (component `requests`, version, when, by which
host and pid). A log newer than this aikit is refused, as for SQLite.

A request's row is upserted (`INSERT ... ON CONFLICT (row_id) DO UPDATE`), so its in-flight
row (status 0) is completed in place. A write that fails because the connection dropped is
retried on a new connection for up to `RETRY_S` seconds before its rows are given up (with a
warning line saying how many).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from aikit.api._logdb import SCORE_COLUMNS, shown, where
from aikit.errors import ConfigError

logger = logging.getLogger("aikit.api")
LOCK_KEY = 0x61696B6974  # "aikit": the advisory lock that serialises migrations
RETRY_S = 30.0
# Version i -> i + 1. Version 1 is the SQLite log's schema 4 (this log started there).
MIGRATIONS = [
    "CREATE TABLE requests (row_id TEXT PRIMARY KEY, request_id TEXT NOT NULL,"
    " time DOUBLE PRECISION NOT NULL, endpoint TEXT NOT NULL, kind TEXT NOT NULL,"
    " status INTEGER NOT NULL, latency_s DOUBLE PRECISION NOT NULL, model TEXT,"
    " calls INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,"
    " completion_tokens INTEGER NOT NULL, cost_usd DOUBLE PRECISION, cached INTEGER,"
    " error TEXT, input TEXT, output TEXT, worker INTEGER, guards TEXT, trace_id TEXT,"
    " host TEXT);"
    " CREATE INDEX requests_time ON requests (time);"
    " CREATE INDEX requests_request_id ON requests (request_id);"
    " CREATE TABLE scores (row_id TEXT NOT NULL, request_id TEXT NOT NULL,"
    " time DOUBLE PRECISION NOT NULL, endpoint TEXT NOT NULL, model TEXT,"
    " metric TEXT NOT NULL, value DOUBLE PRECISION, detail TEXT);"
    " CREATE INDEX scores_row_id ON scores (row_id);"
    " CREATE INDEX scores_time ON scores (time)",
]
SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS aikit_schema (component TEXT NOT NULL, version INTEGER NOT NULL,"
    " applied DOUBLE PRECISION NOT NULL, host TEXT, pid INTEGER,"
    " PRIMARY KEY (component, version))"
)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError(
            "AIKIT_REQUEST_LOG names a PostgreSQL database, but psycopg is not installed;"
            " pip install 'aikit[api]' (or 'psycopg[binary]')"
        ) from exc
    return psycopg


class PostgresStore:
    """One connection per process and thread that uses it; migrated on the first connect."""

    def __init__(self, url: str, columns: Sequence[str]) -> None:
        self.url, self.columns = url, list(columns)
        self._conn: Any = None
        self._pid = 0
        self._ready = False

    def _error(self, exc: Exception) -> ConfigError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return ConfigError(
            f"cannot use the request log {shown(self.url)!r} ({first}); check the server is up,"
            " the URL (user, password, host, port, database) and that the user may create tables"
        )

    def connect(self) -> Any:
        if self._conn is not None and self._pid == os.getpid() and not self._conn.closed:
            return self._conn
        psycopg = _psycopg()
        try:
            self._conn = psycopg.connect(self.url, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        self._pid = os.getpid()
        if not self._ready:
            try:
                self._migrate(self._conn)
            except psycopg.Error as exc:
                raise self._error(exc) from exc
            self._ready = True
        return self._conn

    def _migrate(self, conn: Any) -> None:
        latest = len(MIGRATIONS)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            conn.execute(SCHEMA_TABLE)
            row = conn.execute(
                "SELECT max(version) FROM aikit_schema WHERE component = 'requests'"
            ).fetchone()
            version = int(row[0] or 0)
            if version > latest:
                raise ConfigError(
                    f"request log {shown(self.url)!r} has schema {version}, newer than this"
                    f" aikit ({latest}); upgrade aikit, or point AIKIT_REQUEST_LOG at another"
                    " database"
                )
            for step in range(version, latest):
                conn.execute(MIGRATIONS[step])
                conn.execute(
                    "INSERT INTO aikit_schema VALUES ('requests', %s, %s, %s, %s)",
                    (step + 1, time.time(), socket.gethostname(), os.getpid()),
                )

    def write(self, rows: Sequence[tuple[Any, ...]], scores: Sequence[tuple[Any, ...]]) -> None:
        psycopg = _psycopg()
        names = ", ".join(self.columns)
        marks = ", ".join("%s" for _ in self.columns)
        update = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.columns if c != "row_id")
        upsert = (
            f"INSERT INTO requests ({names}) VALUES ({marks})"
            f" ON CONFLICT (row_id) DO UPDATE SET {update}"
        )
        insert = (
            f"INSERT INTO scores ({', '.join(SCORE_COLUMNS)})"
            f" VALUES ({', '.join('%s' for _ in SCORE_COLUMNS)})"
        )
        rows = [_fit(r) for r in rows]
        deadline = time.monotonic() + RETRY_S
        while True:
            try:
                conn = self.connect()
                with conn.transaction(), conn.cursor() as cursor:
                    if rows:
                        cursor.executemany(upsert, rows)
                    if scores:
                        cursor.executemany(insert, list(scores))
                return
            except (psycopg.Error, ConfigError) as exc:
                self._drop()
                lost = not isinstance(exc, psycopg.OperationalError | ConfigError)
                if lost or time.monotonic() > deadline:
                    logger.warning(
                        "aikit api: %d request rows and %d scores not written to %s (%s)",
                        len(rows),
                        len(scores),
                        shown(self.url),
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    )
                    return
                time.sleep(0.5)

    def select(
        self, table: str, columns: Sequence[str], endpoint: str | None, since: float | None
    ) -> list[tuple[Any, ...]]:
        psycopg = _psycopg()
        clause, args = where(endpoint, since, "%s")
        sql = f"SELECT {', '.join(columns)} FROM {table}{clause} ORDER BY time"
        try:
            conn = self.connect()
            with conn.transaction():
                return list(conn.execute(sql, args).fetchall())
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    def exists(self) -> bool:
        return True

    def _drop(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:  # the connection is already gone
            pass
        self._conn = None

    def close(self) -> None:
        self._drop()


def _fit(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row as PostgreSQL takes it: `cached` as 0/1, like SQLite stores it, and no NUL
    character in a text (PostgreSQL refuses them; a request body may hold one)."""
    return tuple(
        int(v) if isinstance(v, bool) else v.replace("\x00", "\ufffd") if isinstance(v, str) else v
        for v in row
    )
