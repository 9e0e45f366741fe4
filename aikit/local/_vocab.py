"""The embedded models' own tokenizers and metadata: each GGUF's vocabulary through llama.cpp
(vocabulary only, no weights), so budgets and estimates count exactly what the server will see,
and the chat template in a GGUF's metadata renders offline."""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from aikit.local._models import get_model
from aikit.tokens import TokenCounter, in_thread, utf8_bytes


@dataclass(frozen=True)
class Vocab:
    """A GGUF's vocabulary: `count(text)` as the server tokenizes it, and its metadata."""

    count: Callable[[str], int]
    metadata: Callable[[str], str | None]
    bos: str
    eos: str


def token_counter(model: str) -> TokenCounter:
    """A counter of the prompt tokens an embedded model sees (its rendered prompt)."""
    from aikit.local._transcript import render_prompt

    spec = get_model(model)
    # The server tokenizes a transcript with a BOS added; a GGUF template writes its own.
    bos = 1 if spec.prompt_format == "transcript" else 0
    vocab = gguf_vocab(model)

    def render(messages: list[dict[str, Any]]) -> str:
        return render_prompt(model, messages)

    if isinstance(vocab, str):
        return TokenCounter(f"utf-8 bytes (upper bound; {vocab})", utf8_bytes, render, bos=bos)
    return TokenCounter(f"gguf vocabulary of {model}", vocab.count, render, bos=bos)


@cache
def gguf_vocab(model: str) -> Vocab | str:
    """The vocabulary of an embedded model's GGUF, or why there is none."""
    try:
        import llama_cpp
    except ImportError:
        return "llama-cpp-python is not installed"
    path = get_model(model).path()

    def load() -> Any:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        logger = logging.getLogger("llama-cpp-python")  # its loader logs every field otherwise
        level = logger.level
        logger.setLevel(logging.CRITICAL)
        try:
            loaded = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        finally:
            logger.setLevel(level)
        if not loaded:
            raise OSError("llama.cpp could not read the GGUF file")
        return loaded

    loaded = in_thread(load, f"the vocabulary of {model}")
    if isinstance(loaded, str):
        return loaded
    vocab = llama_cpp.llama_model_get_vocab(loaded)
    lock = threading.Lock()
    special = get_model(model).prompt_format == "gguf-template"  # its turn markers are tokens

    def count(text: str) -> int:
        data = text.encode("utf-8")
        size = len(data) + 8  # a token is at least one byte
        buffer = (llama_cpp.llama_token * size)()
        with lock:
            n = llama_cpp.llama_tokenize(vocab, data, len(data), buffer, size, False, special)
        return int(n) if n >= 0 else -int(n)

    def metadata(key: str) -> str | None:
        size = 1 << 16
        buffer = ctypes.create_string_buffer(size)
        with lock:
            n = llama_cpp.llama_model_meta_val_str(loaded, key.encode(), buffer, size)
        return None if n < 0 else buffer.value.decode("utf-8", errors="replace")

    def text_of(token: int) -> str:
        if token < 0:
            return ""
        return (llama_cpp.llama_vocab_get_text(vocab, token) or b"").decode("utf-8", "replace")

    bos = text_of(int(llama_cpp.llama_vocab_bos(vocab)))
    eos = text_of(int(llama_cpp.llama_vocab_eos(vocab)))
    return Vocab(count=count, metadata=metadata, bos=bos, eos=eos)
