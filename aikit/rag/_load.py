"""Loading documents: Markdown, plain text, HTML, PDF and Jupyter notebooks, from a file, a
folder (read recursively) or a glob.

HTML and notebooks become Markdown-like text (HTML headings as `#` lines, notebook code cells
fenced), so the chunker can follow their headings too.
"""

from __future__ import annotations

import glob
import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from aikit.errors import LoadError


@dataclass
class Document:
    """One loaded file: its text, where it came from, and what is known about it.

    `source` is the path relative to the folder or glob prefix it was loaded from (stable across
    machines, so it can serve as an id); `metadata` has `path` (absolute), `format` and `title`.
    """

    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(self.metadata.get("title") or Path(self.source).stem)

    @property
    def format(self) -> str:
        return str(self.metadata.get("format", "text"))


FORMATS: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".ipynb": "notebook",
}


def load(path_or_glob: str | Path, *, root: str | Path | None = None) -> list[Document]:
    """Load documents from a file, a folder (recursively) or a glob such as `docs/**/*.md`.

    Args:
        path_or_glob: a file, a folder, or a glob pattern.
        root: folder that `Document.source` is relative to; default the folder given, the
            glob's fixed prefix, or the file's own folder.

    Returns:
        The documents, sorted by source. Files of other types inside a folder are skipped.

    Raises:
        LoadError: nothing matched, or a file cannot be read (the message names the file).
    """
    target = Path(path_or_glob).expanduser()
    text = str(path_or_glob)
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        files = [f for f in files if f.suffix.lower() in FORMATS]
        base = _glob_prefix(text)
    elif target.is_dir():
        files = sorted(
            p
            for p in target.rglob("*")
            if p.is_file()
            and p.suffix.lower() in FORMATS
            and not any(part.startswith(".") for part in p.relative_to(target).parts)
        )
        base = target
    elif target.is_file():
        if target.suffix.lower() not in FORMATS:
            raise LoadError(
                f"cannot load {target}: {target.suffix or 'no extension'} is not a known format;"
                f" use one of {', '.join(sorted(FORMATS))}"
            )
        files, base = [target], target.parent
    else:
        raise LoadError(f"cannot load {text}: no such file or folder; check the path")
    if not files:
        raise LoadError(
            f"no documents in {text}; it holds no {', '.join(sorted(FORMATS))} files"
            " (check the path or the glob)"
        )
    base = Path(root).expanduser() if root is not None else base
    return [load_file(file, root=base) for file in files]


def _glob_prefix(pattern: str) -> Path:
    parts: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def load_file(path: str | Path, *, root: str | Path | None = None) -> Document:
    """Load one file; `root` is the folder its `source` is relative to (default: its folder)."""
    file = Path(path).expanduser()
    kind = FORMATS.get(file.suffix.lower())
    if kind is None:
        raise LoadError(
            f"cannot load {file}: {file.suffix or 'no extension'} is not a known format;"
            f" use one of {', '.join(sorted(FORMATS))}"
        )
    absolute = file.resolve()
    try:
        source = absolute.relative_to(Path(root or file.parent).resolve()).as_posix()
    except ValueError:
        source = absolute.as_posix()
    try:
        text, title, extra = _READERS[kind](file)
    except LoadError:
        raise
    except OSError as exc:
        raise LoadError(
            f"cannot read {file}: {exc.strerror}; check it exists and is readable"
        ) from exc
    except UnicodeDecodeError as exc:
        raise LoadError(
            f"cannot read {file}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from exc
    except Exception as exc:  # a parser's own error: a broken PDF, notebook JSON, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LoadError(
            f"cannot read {file} as {kind} ({reason}); fix or re-export the file, or remove it"
        ) from exc
    title = title or file.stem.replace("-", " ").replace("_", " ")
    metadata = {"path": str(absolute), "format": kind, "title": title, **extra}
    return Document(text=text.strip() + "\n", source=source, metadata=metadata)


Reader = Callable[[Path], tuple[str, str | None, dict[str, Any]]]


def _first_heading(text: str) -> str | None:
    match = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)
    return match.group(1).strip() if match else None


def _read_markdown(file: Path) -> tuple[str, str | None, dict[str, Any]]:
    text = file.read_text(encoding="utf-8")
    return text, _first_heading(text), {}


def _read_text(file: Path) -> tuple[str, str | None, dict[str, Any]]:
    text = file.read_text(encoding="utf-8")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return text, first if 0 < len(first) <= 80 else None, {}


class _HTMLText(HTMLParser):
    """HTML -> Markdown-like text: headings become `#` lines, blocks become paragraphs."""

    BLOCKS = frozenset({"p", "div", "section", "article", "table", "tr", "ul", "ol", "blockquote"})
    SKIP = frozenset({"script", "style", "head", "noscript", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self._skip = 0
        self._pre = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "pre":
            self._pre += 1
            self.parts.append("\n\n```\n")
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("br", "td", "th"):
            self.parts.append("\n" if tag == "br" else " ")
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self.parts.append("\n```\n\n")
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        if not self._skip:
            # Code keeps its line breaks; NUL marks them until the whitespace is normalised.
            self.parts.append(data.replace("\n", "\0") if self._pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        joined = "".join(self.parts)
        lines = [ln.strip() for ln in joined.splitlines()]
        lines = [ln.replace("\0", "\n") for ln in lines]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _read_html(file: Path) -> tuple[str, str | None, dict[str, Any]]:
    parser = _HTMLText()
    parser.feed(file.read_text(encoding="utf-8"))
    parser.close()
    text = parser.text()
    return text, (html.unescape(parser.title) if parser.title else _first_heading(text)), {}


def _read_pdf(file: Path) -> tuple[str, str | None, dict[str, Any]]:
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise LoadError(
            f"cannot read {file}: PDF support needs pypdf; install it with pip install 'aikit[rag]'"
        ) from exc
    reader = PdfReader(file)
    if reader.is_encrypted:
        raise LoadError(f"cannot read {file}: the PDF is encrypted; save an unencrypted copy")
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    text = "\n\n".join(p for p in pages if p)
    if not text:
        raise LoadError(
            f"cannot read {file}: the PDF has no extractable text (scanned images?); OCR it first"
        )
    meta_title = reader.metadata.title if reader.metadata else None
    return text, (str(meta_title) if meta_title else None), {"pages": len(pages)}


def _read_notebook(file: Path) -> tuple[str, str | None, dict[str, Any]]:
    notebook = json.loads(file.read_text(encoding="utf-8"))
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise LoadError(f"cannot read {file}: not a Jupyter notebook (no cells); check the file")
    language = (notebook.get("metadata", {}).get("kernelspec") or {}).get("language", "python")
    parts = []
    for cell in cells:
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        if not text.strip():
            continue
        if cell.get("cell_type") == "markdown":
            parts.append(text.strip())
        elif cell.get("cell_type") == "code":
            parts.append(f"```{language}\n{text.strip()}\n```")
    text = "\n\n".join(parts)
    return text, _first_heading(text), {"cells": len(cells)}


_READERS: dict[str, Reader] = {
    "markdown": _read_markdown,
    "text": _read_text,
    "html": _read_html,
    "pdf": _read_pdf,
    "notebook": _read_notebook,
}
