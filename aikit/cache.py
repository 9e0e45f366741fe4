"""The response store: canonical request hash -> model response, in SQLite (WAL mode).

Key spec (version 2). The key is ``"v2:" + sha256(canonical_json)`` where ``canonical_json``
is ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` of::

    {"key_version": 2,
     "endpoint": endpoint identity: "aikit-local" for the embedded model, else the base URL
                 lower-cased, without credentials, query or trailing slash,
     "model": the model name sent,
     "messages": the messages sent, exactly,
     "params": every other generation parameter sent (temperature, max_tokens, seed, stop,
               top_p, n, ...), None values dropped,
     "response_format": the response format sent (JSON schema included) or null,
     "tools": the tools sent or null,
     "extra_body": the SDK's `extra_body` (vLLM, llama.cpp and Ollama take sampling options
                   there), only when given and non-empty,
     "extra_query": the SDK's `extra_query`, likewise,
     "repeat": the repeat index (0 for the first sample of an otherwise identical request)}

Left out because they cannot change the answer: credentials and headers (`extra_headers`),
timeout, retries, concurrency, `stream`, `stream_options`, `user`, `metadata`, `store`.
Changing the canonical form bumps `KEY_VERSION`, so old entries miss instead of answering the
wrong request.

Old entries. Version 1 left `extra_body`/`extra_query` out and was otherwise the same, so a
request that has neither still finds its `v1:` entry (store and cassettes are read under both
keys; new answers are written under `v2:` only). A request with `extra_body` or `extra_query`
never reads a `v1:` entry: version 1 could not tell it from the same request without them.
Cassettes stay valid (each entry's key is checked against its own `key_version`).

Modes (`AIKIT_CACHE`): `on` reads and writes; `off` neither; `replay` only reads and a miss is
a `CacheMissError`; `record` always calls and overwrites. Errors and empty answers are never
stored; neither are credentials (the request stored is the canonical form above).

A file that is corrupt raises `StoreError` saying so and how to start afresh (move it away, or
`aikit cache clear --force`); a write that fails (disk full, read-only) raises `StoreError`
naming the file. `import_` checks every entry (its key, and that its response is a chat
completion) before it writes any.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aikit._sqlite import SQLiteFile, transaction
from aikit._userfile import read_text
from aikit.errors import CacheMissError, ConfigError

KEY_VERSION = 2
LEGACY_KEY_VERSIONS = (1,)  # read for requests whose canonical form they share (see above)
SCHEMA_VERSION = 1
NON_OUTPUT_PARAMS = frozenset(
    {
        "timeout",
        "max_retries",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "extra_headers",
        "concurrency",
    }
)

# Ordered migrations: MIGRATIONS[i] takes the schema from version i to i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS responses (
        key      TEXT PRIMARY KEY,
        model    TEXT NOT NULL,
        request  TEXT NOT NULL,
        response TEXT NOT NULL,
        created  REAL NOT NULL
    );
    """,
]


def endpoint_identity(base_url: str) -> str:
    """The endpoint part of the key for a URL: scheme, host, port and path, without
    credentials or query (the embedded model's is `aikit.local.IDENTITY`)."""
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def canonical_request(
    *,
    endpoint: str,
    model: str,
    messages: list[dict[str, Any]],
    params: Mapping[str, Any] | None = None,
    repeat: int = 0,
) -> dict[str, Any]:
    """The request as the key sees it (see the module docstring)."""
    rest = {k: v for k, v in (params or {}).items() if v is not None and k not in NON_OUTPUT_PARAMS}
    response_format = rest.pop("response_format", None)
    tools = rest.pop("tools", None)
    extras = {name: rest.pop(name, None) for name in ("extra_body", "extra_query")}
    canonical = {
        "key_version": KEY_VERSION,
        "endpoint": endpoint,
        "model": model,
        "messages": json.loads(json.dumps(messages)),
        "params": json.loads(json.dumps(rest)),
        "response_format": response_format,
        "tools": tools,
        "repeat": repeat,
    }
    for name, value in extras.items():
        if value:  # absent when not given, so such a request keeps its version-1 form
            canonical[name] = json.loads(json.dumps(value))
    return canonical


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(canonical: Mapping[str, Any]) -> str:
    """`v2:<sha256>` of the canonical JSON of a request from `canonical_request` (the prefix
    is the request's own `key_version`, so entries of older versions still check)."""
    digest = hashlib.sha256(_dumps(canonical).encode("utf-8")).hexdigest()
    return f"v{canonical.get('key_version', KEY_VERSION)}:{digest}"


def lookup_keys(canonical: Mapping[str, Any]) -> list[str]:
    """The keys a read tries, newest first: the current key, then the version-1 key when the
    request has no `extra_body`/`extra_query` (its canonical form is the same there)."""
    keys = [request_key(canonical)]
    if not any(name in canonical for name in ("extra_body", "extra_query")):
        for version in LEGACY_KEY_VERSIONS:
            keys.append(request_key({**canonical, "key_version": version}))
    return keys


def describe_request(canonical: Mapping[str, Any], words: int = 8) -> str:
    """The first words of the last user message, for error messages."""
    for message in reversed(canonical.get("messages", [])):
        content = message.get("content")
        if isinstance(content, str) and message.get("role") == "user":
            head = content.split()
            return " ".join(head[:words]) + (" …" if len(head) > words else "")
    return "(no user message)"


class ResponseStore:
    """A SQLite response store that several processes and threads may write at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = SQLiteFile(
            self.path,
            what="response store",
            fix="set AIKIT_HOME or AIKIT_CACHE_PATH to a writable place",
            migrations=MIGRATIONS,
        )
        self._connect = self._db.connect
        self._transaction = transaction
        self.close = self._db.close

    # -- entries --------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for `key`, or None."""
        with self._db.errors():
            row = (
                self._connect()
                .execute("SELECT response FROM responses WHERE key = ?", (key,))
                .fetchone()
            )
        return None if row is None else dict(json.loads(row[0]))

    def find(self, canonical: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored response for a canonical request under any of its `lookup_keys`."""
        for key in lookup_keys(canonical):
            found = self.get(key)
            if found is not None:
                return found
        return None

    def put(self, key: str, request: Mapping[str, Any], response: Mapping[str, Any]) -> None:
        """Store (or overwrite) one response; committed before this returns."""
        with self._db.errors():
            conn = self._connect()
            with self._transaction(conn):
                _insert(conn, key, request, response)

    def lookup(
        self, canonical: Mapping[str, Any], cassettes: Sequence[Path] = ()
    ) -> dict[str, Any]:
        """Replay mode: the answer from the store or a cassette, else a `CacheMissError`."""
        found = self.find(canonical)
        if found is None:
            recorded = cassette_entries(cassettes)
            found = next((recorded[k] for k in lookup_keys(canonical) if k in recorded), None)
        if found is None:
            key = request_key(canonical)
            raise CacheMissError(
                f"no recorded response for {describe_request(canonical)!r} (model"
                f" {canonical.get('model')}, key {key[:15]}) in {str(self.path)!r} or the"
                " cassettes in AIKIT_CASSETTES; re-record with AIKIT_CACHE=record"
            )
        return found

    def stats(self) -> dict[str, Any]:
        """Entry count, size on disk and entries per model."""
        with self._db.errors():
            conn = self._connect()
            per_model = dict(
                conn.execute("SELECT model, COUNT(*) FROM responses GROUP BY model ORDER BY model")
            )
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return {
            "path": str(self.path),
            "entries": sum(per_model.values()),
            "bytes": size,
            "models": per_model,
        }

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        with self._db.errors():
            conn = self._connect()
            with self._transaction(conn):
                count: int = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
                conn.execute("DELETE FROM responses")
            conn.execute("VACUUM")
        return count

    def export(self, path: str | Path) -> int:
        """Write every entry as JSONL (one per line, sorted by key) for a diffable cassette."""
        target = Path(path)
        if target.is_dir():
            raise ConfigError(f"{str(target)!r} is a folder; export to a file such as x.jsonl")
        if not target.parent.is_dir():
            raise ConfigError(
                f"cannot export to {str(target)!r}: folder {str(target.parent)!r} does not"
                " exist; create it or pick another path"
            )
        with self._db.errors():
            rows = (
                self._connect()
                .execute("SELECT key, request, response FROM responses ORDER BY key")
                .fetchall()
            )
        tmp = target.with_name(target.name + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as out:
                for key, request, response in rows:
                    entry = {
                        "key": key,
                        "request": json.loads(request),
                        "response": json.loads(response),
                    }
                    out.write(_dumps(entry) + "\n")
            tmp.replace(target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ConfigError(
                f"cannot export to {str(target)!r} ({exc.strerror}); pick a writable path"
            ) from exc
        return len(rows)

    def import_(self, path: str | Path) -> int:
        """Load entries from a JSONL cassette (overwriting equal keys); all or nothing: every
        entry is checked (its key, and that its response is a chat completion) first."""
        entries = read_cassette(Path(path), validate=True)
        with self._db.errors():
            conn = self._connect()
            with self._transaction(conn):
                for key, request, response in entries:
                    _insert(conn, key, request, response)
        return len(entries)


def _insert(
    conn: sqlite3.Connection, key: str, request: Mapping[str, Any], response: Mapping[str, Any]
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO responses (key, model, request, response, created)"
        " VALUES (?, ?, ?, ?, ?)",
        (key, str(request.get("model", "")), _dumps(request), _dumps(response), time.time()),
    )


def read_cassette(
    path: Path, *, validate: bool = False
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The (key, request, response) entries of a JSONL cassette, checked line by line; with
    `validate`, each response must also be an openai `ChatCompletion`."""
    entries = []
    lines = read_text(
        path,
        what="cassette",
        error=ConfigError,
        save_as="JSONL as `aikit cache export FILE` writes it",
    ).splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            key, request, response = entry["key"], entry["request"], entry["response"]
            if not (isinstance(request, dict) and isinstance(response, dict)):
                raise TypeError("request and response must be JSON objects")
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{str(path)!r} line {number} is not a cassette entry ({exc});"
                " export one with `aikit cache export FILE`"
            ) from exc
        if request_key(request) != key:
            raise ConfigError(
                f"{str(path)!r} line {number}: key {key[:15]} does not match its request;"
                " re-record the cassette instead of editing it by hand"
            )
        if validate:
            _check_completion(path, number, response)
        entries.append((str(key), dict(request), dict(response)))
    return entries


def _check_completion(path: Path, number: int, response: Mapping[str, Any]) -> None:
    from openai.types.chat import ChatCompletion
    from pydantic import ValidationError

    try:
        ChatCompletion.model_validate(response)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ConfigError(
            f"{str(path)!r} line {number}: the response is not a chat completion ({where}:"
            f" {first['msg']}); export entries with `aikit cache export FILE`"
        ) from exc


_cassette_memo: dict[tuple[Path, float], dict[str, dict[str, Any]]] = {}


def cassette_entries(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """key -> response over every cassette in `paths` (files, or folders of `*.jsonl`). Like a
    search path, the first cassette that holds a key answers it: `aikit rerecord` replays its
    new recording ahead of the old cassette still beside the notebook."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path] if path.is_file() else []
        for file in files:
            memo_key = (file, file.stat().st_mtime)
            if memo_key not in _cassette_memo:
                _cassette_memo[memo_key] = {k: resp for k, _, resp in read_cassette(file)}
            for key, response in _cassette_memo[memo_key].items():
                found.setdefault(key, response)
    return found


_stores: dict[Path, ResponseStore] = {}
_stores_lock = threading.Lock()


def store_at(path: str | Path) -> ResponseStore:
    """The process's shared `ResponseStore` for `path`."""
    resolved = Path(path).expanduser().resolve()
    with _stores_lock:
        if resolved not in _stores:
            _stores[resolved] = ResponseStore(resolved)
        return _stores[resolved]
