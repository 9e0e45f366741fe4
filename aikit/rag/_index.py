"""The index: one LanceDB table on disk (vectors + a full-text index), searched dense, BM25 or
hybrid (reciprocal rank fusion of the two).

The folder holds the LanceDB database and `aikit-index.json` (format version, the embedder's
name and vector size), so re-opening with another embedder is an error, not silent garbage.
The folder may be a URL (`s3://bucket/index`, `gs://`, `az://`): LanceDB reads and writes
object storage itself, full-text index included, with credentials from the environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; `AWS_ENDPOINT_URL` and
`AWS_ALLOW_HTTP=true` for an S3-compatible endpoint such as MinIO); `aikit-index.json` goes
through fsspec (`aikit[cloud]`). The embedding cache stays on each machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aikit import _storage as storage
from aikit import tracing
from aikit.errors import RagError
from aikit.rag._chunk import (
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_SIZE,
    Chunk,
    check_sizes,
    chunk,
)
from aikit.rag._embed import Embedder, get_embedder
from aikit.rag._load import Document
from aikit.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

Mode = Literal["dense", "bm25", "hybrid"]
MODES: tuple[str, ...] = ("dense", "bm25", "hybrid")
INDEX_VERSION = 1
META_FILE = "aikit-index.json"
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009)
COLUMNS = ["id", "source", "heading", "title", "format", "position", "tokens", "text"]
RESULT_COLUMNS = ["id", "source", "heading", "score", "text"]


def _lancedb() -> Any:
    try:
        import lancedb
    except ImportError as exc:
        raise RagError(
            "aikit.rag.Index needs LanceDB; install it with pip install 'aikit[rag]'"
        ) from exc
    return lancedb


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Index:
    """A LanceDB table of chunks with their vectors and a full-text index, on disk.

    Args:
        path: folder of the index, or a URL (`s3://bucket/index`); default
            `$AIKIT_HOME/rag/index`. Re-opening a folder finds the index as it was left.
        embedder: `"local"` (all-MiniLM-L6-v2, offline), `"openai:MODEL"`, or an `Embedder`.
        chunk_size: tokens per chunk when `add` is given documents; default what the index
            was built with, else 200.
        chunk_overlap: tokens repeated between neighbouring chunks; default as built, else 30.
        table: the table's name inside the database.

    Example:
        >>> index = aikit.rag.Index(tmp_path)  # doctest: +SKIP
        >>> index.add(aikit.rag.load("docs/"))  # doctest: +SKIP
        >>> index.search("How do I reset my password?", k=3, mode="hybrid")  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        embedder: str | Embedder = "local",
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        table: str = "chunks",
    ) -> None:
        home = get_settings().home
        self.path: Path | str  # a URL (object storage) stays a string
        if path is not None and storage.is_url(path):
            self.path = storage.normalize(path)
        else:
            self.path = Path(path).expanduser() if path is not None else home / "rag" / "index"
        self.embedder = get_embedder(embedder)
        self.table_name = table
        self._db = self._connect()
        self._table: Any = None
        meta = self._check_meta()
        self.chunk_size = chunk_size or int(meta.get("chunk_size", DEFAULT_CHUNK_SIZE))
        overlap = meta.get("chunk_overlap", DEFAULT_CHUNK_OVERLAP)
        self.chunk_overlap = int(overlap) if chunk_overlap is None else chunk_overlap
        check_sizes(self.chunk_size, self.chunk_overlap)
        if table in self._db.list_tables().tables:
            self._table = self._db.open_table(table)

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, embedder={self.embedder.name!r}, chunks={len(self)})"

    @property
    def table(self) -> Any:
        """The LanceDB table (None until something is added), for what aikit does not wrap."""
        return self._table

    def __len__(self) -> int:
        return 0 if self._table is None else int(self._table.count_rows())

    def _connect(self) -> Any:
        try:
            return _lancedb().connect(str(self.path))
        except (OSError, ValueError, RuntimeError) as exc:
            raise RagError(
                f"cannot open index {self.path}: {str(exc).splitlines()[0]}; check the path, and"
                " for object storage the bucket and the credentials in the environment"
            ) from exc

    # -- metadata ---------------------------------------------------------------------------
    def _meta_path(self) -> str:
        return storage.join(self.path, META_FILE)

    def _check_meta(self) -> dict[str, Any]:
        try:
            text = storage.read_text(self._meta_path())
        except FileNotFoundError:
            return {}
        meta: dict[str, Any] = json.loads(text)
        if meta.get("version", 0) > INDEX_VERSION:
            raise RagError(
                f"index {self.path} has format {meta['version']}, newer than this aikit"
                f" ({INDEX_VERSION}); upgrade aikit"
            )
        built_with = meta.get("embedder")
        if built_with != self.embedder.name:
            raise RagError(
                f"index {self.path} was built with embedder {built_with!r}, not"
                f" {self.embedder.name!r}; open it with that embedder or build a new index"
            )
        return meta

    def _write_meta(self, dim: int) -> None:
        meta = {
            "version": INDEX_VERSION,
            "embedder": self.embedder.name,
            "dim": dim,
            "chunk_size": self.chunk_size,
            "chunk_overlap": self.chunk_overlap,
        }
        storage.write_text(self._meta_path(), json.dumps(meta, indent=1) + "\n")

    # -- writing ----------------------------------------------------------------------------
    def _chunks_of(self, items: Document | Chunk | Iterable[Document | Chunk]) -> list[Chunk]:
        many = [items] if isinstance(items, (Document, Chunk)) else list(items)
        docs = [d for d in many if isinstance(d, Document)]
        given = [c for c in many if isinstance(c, Chunk)]
        odd = [x for x in many if not isinstance(x, (Document, Chunk))]
        if odd:
            raise RagError(
                f"cannot index a {type(odd[0]).__name__}; pass Documents (aikit.rag.load)"
                " or Chunks (aikit.rag.chunk)"
            )
        made = chunk(docs, chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap)
        return given + made

    def add(self, items: Document | Chunk | Iterable[Document | Chunk]) -> int:
        """Chunk (documents), embed (only what the cache lacks) and upsert by chunk id.

        Returns:
            How many chunks were written.
        """
        chunks = self._chunks_of(items)
        if not chunks:
            return 0
        unique = list({c.id: c for c in chunks}.values())
        vectors = self.embedder.embed([c.context for c in unique])
        data = self._arrow(unique, vectors)
        if self._table is None:
            self._table = self._db.create_table(self.table_name, data=data)
        else:
            (
                self._table.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )
        self._write_meta(int(vectors.shape[1]))
        self._reindex()
        return len(unique)

    def update(self, items: Document | Chunk | Iterable[Document | Chunk]) -> int:
        """Replace everything indexed from the sources of `items` with `items`.

        Chunks that did not change keep their id and their cached vector; chunks that are gone
        from a document are deleted. Returns how many chunks were written.
        """
        chunks = self._chunks_of(items)
        sources = sorted({c.source for c in chunks})
        keep = {c.id for c in chunks}
        if self._table is not None and sources:
            stale = [
                i
                for i in self._ids(f"source IN ({','.join(map(_quote, sources))})")
                if i not in keep
            ]
            for start in range(0, len(stale), 500):
                ids = ",".join(map(_quote, stale[start : start + 500]))
                self._table.delete(f"id IN ({ids})")
        return self.add(chunks)

    def delete(self, source: str | Sequence[str]) -> int:
        """Delete every chunk of one source or several; returns how many were deleted."""
        sources = [source] if isinstance(source, str) else list(source)
        if self._table is None or not sources:
            return 0
        before = len(self)
        self._table.delete(f"source IN ({','.join(map(_quote, sources))})")
        self._reindex()
        return before - len(self)

    def _reindex(self) -> None:
        from lancedb.index import FTS

        if self._table is not None and len(self) > 0:
            self._table.create_index("search_text", config=FTS(), replace=True)

    def _arrow(self, chunks: list[Chunk], vectors: Any) -> Any:
        import pyarrow as pa  # type: ignore[import-untyped]

        dim = int(vectors.shape[1])
        columns = {
            "id": [c.id for c in chunks],
            "source": [c.source for c in chunks],
            "heading": [c.heading for c in chunks],
            "title": [str(c.metadata.get("title", "")) for c in chunks],
            "format": [str(c.metadata.get("format", "")) for c in chunks],
            "position": pa.array([c.position for c in chunks], type=pa.int32()),
            "tokens": pa.array([c.tokens for c in chunks], type=pa.int32()),
            "text": [c.text for c in chunks],
            "search_text": [c.context for c in chunks],
        }
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, dim)
        return pa.table(columns)

    # -- reading ----------------------------------------------------------------------------
    def _ids(self, where: str) -> list[str]:
        rows = self._table.search().where(where).select(["id"]).limit(None).to_arrow()
        return [str(i) for i in rows["id"].to_pylist()]

    def sources(self) -> list[str]:
        """Every source in the index, sorted."""
        if self._table is None:
            return []
        rows = self._table.search().select(["source"]).limit(None).to_arrow()
        return sorted(set(rows["source"].to_pylist()))

    def chunks(self, where: str | None = None) -> pd.DataFrame:
        """Every chunk (no vectors) as a DataFrame, in source and position order."""
        import pandas as pd

        if self._table is None:
            return pd.DataFrame(columns=COLUMNS)
        query = self._table.search().select(COLUMNS).limit(None)
        if where:
            query = query.where(where)
        frame: pd.DataFrame = query.to_arrow().to_pandas()
        return frame.sort_values(["source", "position", "id"], ignore_index=True)[COLUMNS]

    def vectors(self, ids: Sequence[str]) -> dict[str, Any]:
        """chunk id -> stored vector, for the ids that exist."""
        if self._table is None or not ids:
            return {}
        where = f"id IN ({','.join(map(_quote, ids))})"
        rows = self._table.search().where(where).select(["id", "vector"]).limit(None).to_arrow()
        import numpy as np

        return {
            str(i): np.asarray(v, dtype=np.float32)
            for i, v in zip(rows["id"].to_pylist(), rows["vector"].to_pylist(), strict=True)
        }

    def search(
        self, query: str, k: int = 5, *, mode: Mode = "hybrid", where: str | None = None
    ) -> pd.DataFrame:
        """The `k` chunks most relevant to `query`, best first.

        Args:
            query: the question or keywords.
            k: how many chunks to return.
            mode: `dense` (cosine similarity of embeddings), `bm25` (full-text), or `hybrid`
                (reciprocal rank fusion of both, k=60).
            where: an SQL filter on the chunk columns, e.g. `"source = 'hr/leave.md'"`.

        Returns:
            A DataFrame with columns id, source, heading, score, text. `score` is the cosine
            similarity (dense), the BM25 score (bm25) or the fused score (hybrid).
        """
        import pandas as pd

        if mode not in MODES:
            raise RagError(f"search mode {mode!r} is not known; use one of {', '.join(MODES)}")
        if not isinstance(k, int) or k < 1:
            raise RagError(f"k={k!r} must be a positive number of chunks, e.g. 5")
        if not isinstance(query, str) or not query.strip():
            raise RagError(f"query {query!r} is empty; pass the question to search for")
        with tracing.span("rag.search", {"aikit.rag_mode": mode, "aikit.rag_k": k}) as current:
            if self._table is None:
                return pd.DataFrame(columns=RESULT_COLUMNS)
            if mode == "dense":
                rows = self._dense(query, k, where)
            elif mode == "bm25":
                rows = self._bm25(query, k, where)
            else:
                pool = max(4 * k, 20)
                rows = _fuse([self._dense(query, pool, where), self._bm25(query, pool, where)])
            frame = pd.DataFrame(rows[:k], columns=RESULT_COLUMNS)
            frame["score"] = frame["score"].astype(float)
            tracing.annotate(current, {"aikit.rag_document_ids": list(frame["id"])})
            return frame

    def _dense(self, query: str, k: int, where: str | None) -> list[dict[str, Any]]:
        vector = self.embedder.embed_query(query)
        q = self._table.search(vector, vector_column_name="vector").distance_type("cosine")
        if where:
            q = q.where(where, prefilter=True)
        table = q.select(["id", "source", "heading", "text", "_distance"]).limit(k).to_arrow()
        rows = table.to_pylist()
        for row in rows:
            row["score"] = 1.0 - float(row.pop("_distance"))
        return _ranked(rows)

    def _bm25(self, query: str, k: int, where: str | None) -> list[dict[str, Any]]:
        q = self._table.search(query, query_type="fts", fts_columns="search_text")
        if where:
            q = q.where(where, prefilter=True)
        # Over-fetch so ties at the cut are broken by id, the same way every run.
        table = q.select(["id", "source", "heading", "text", "_score"]).limit(k + 10).to_arrow()
        rows = table.to_pylist()
        for row in rows:
            row["score"] = float(row.pop("_score"))
        return _ranked(rows)[:k]


def _ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (-r["score"], r["id"]))


def _fuse(rankings: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Reciprocal rank fusion: each chunk scores the sum of 1 / (60 + rank) over rankings."""
    fused: dict[str, dict[str, Any]] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking, start=1):
            entry = fused.setdefault(row["id"], {**row, "score": 0.0})
            entry["score"] += 1.0 / (RRF_K + rank)
    return _ranked(list(fused.values()))
