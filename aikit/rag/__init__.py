"""Retrieval-augmented generation: load, chunk, embed, index, retrieve, answer with citations.

```python
from aikit import rag

docs = rag.load("notebooks/data/kb")
index = rag.Index("/tmp/kb-index")            # LanceDB on disk, all-MiniLM-L6-v2 offline
index.add(docs)                               # chunks, embeds (cached by content), indexes
index.search("How many leave days?", k=5, mode="hybrid")
rag.answer("How many leave days do I get?", index, k=4).text
```
Heavy dependencies (LanceDB, sentence-transformers, torch, pypdf) load on first use; install
them with `pip install torch==2.13.0 'aikit[rag]'`.
"""

from aikit.errors import LoadError, RagError
from aikit.rag._answer import (
    NOT_FOUND,
    Answer,
    Sentence,
    aanswer,
    answer,
    build_messages,
    check_sentences,
    fence,
)
from aikit.rag._chunk import Chunk, Tokenizer, chunk, chunk_id, default_tokenizer
from aikit.rag._embed import (
    EMBEDDING_MODEL,
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    get_embedder,
)
from aikit.rag._index import MODES, Index, Mode
from aikit.rag._load import Document, load, load_file

__all__ = [
    "EMBEDDING_MODEL",
    "MODES",
    "NOT_FOUND",
    "Answer",
    "Chunk",
    "Document",
    "Embedder",
    "Index",
    "LoadError",
    "LocalEmbedder",
    "Mode",
    "OpenAIEmbedder",
    "RagError",
    "Sentence",
    "Tokenizer",
    "aanswer",
    "answer",
    "build_messages",
    "check_sentences",
    "chunk",
    "chunk_id",
    "default_tokenizer",
    "fence",
    "get_embedder",
    "load",
    "load_file",
]
