"""SQLite files that several processes and threads write at once: WAL mode, a busy timeout,
one connection per thread and process, and ordered migrations (`PRAGMA user_version`)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aikit.errors import ConfigError, StoreError


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the lock up front (no deadlock between writers)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _corrupt(exc: sqlite3.Error) -> bool:
    """SQLite's own words for a damaged file ("database disk image is malformed", "file is not
    a database"); its other errors (locked, read-only, full) are OperationalError."""
    text = str(exc).lower()
    return (
        isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
    ) or any(word in text for word in ("malformed", "not a database", "corrupt"))


def _wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. Two processes opening a new file at once can get "database is locked"
    here without SQLite's busy handler being consulted, so wait for it by hand."""
    for attempt in range(100):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)


class SQLiteFile:
    """`connect()` gives this thread's connection, creating and migrating the file once.

    `migrations[i]` takes the schema from version i to i + 1; `what` names the file in errors
    and `fix` says what to do when it cannot be opened.
    """

    def __init__(self, path: str | Path, *, what: str, fix: str, migrations: list[str]) -> None:
        self.path = Path(path)
        self.what, self.fix, self.migrations = what, fix, migrations
        self._local = threading.local()
        self._ready = False

    def connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 60000")
            _wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            raise self.error(exc) from exc
        except OSError as exc:
            raise ConfigError(
                f"cannot open the {self.what} {str(self.path)!r} ({exc}); {self.fix}"
            ) from exc
        self._local.conn, self._local.pid = conn, os.getpid()
        if not self._ready:
            with self.errors():
                self._migrate(conn)
            self._ready = True
        return conn

    def error(self, exc: sqlite3.Error) -> ConfigError:
        """The one-line error for a failed SQLite operation on this file: corrupt (say so, and
        how to start afresh), cannot be written (name the file), or cannot be opened."""
        text = str(exc)
        where = f"{self.what} {str(self.path)!r}"
        if _corrupt(exc):
            return StoreError(
                f"the {where} is corrupt ({text}); move it away or delete it (with its -wal and"
                " -shm files) to start an empty one, e.g. `aikit cache clear --force`"
            )
        if isinstance(exc, sqlite3.OperationalError) and any(
            word in text for word in ("readonly", "disk", "full", "I/O", "locked")
        ):
            return StoreError(f"cannot write the {where} ({text}); {self.fix}")
        return ConfigError(f"cannot open the {where} ({text}); {self.fix}")

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn a SQLite error inside the block into `error(exc)`."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise self.error(exc) from exc

    def _migrate(self, conn: sqlite3.Connection) -> None:
        latest = len(self.migrations)
        with transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > latest:
                raise ConfigError(
                    f"{self.what} {str(self.path)!r} has schema {version}, newer than this"
                    f" aikit ({latest}); upgrade aikit or {self.fix}"
                )
            for step in range(version, latest):
                conn.execute(self.migrations[step])
                conn.execute(f"PRAGMA user_version = {step + 1}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
