"""The embedded model's own tokenizer: its GGUF vocabulary through llama.cpp (vocabulary only,
no weights), so budgets and estimates count exactly what the server will see."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

from aikit.local._server import model_path
from aikit.local._transcript import render_transcript
from aikit.tokens import TokenCounter, in_thread, utf8_bytes


def token_counter(model: str) -> TokenCounter:
    """A counter of the prompt tokens the embedded model sees (its rendered transcript)."""
    vocab = gguf_counter()
    if isinstance(vocab, str):
        return TokenCounter(f"utf-8 bytes (upper bound; {vocab})", utf8_bytes, render_transcript)
    return TokenCounter(f"gguf vocabulary of {model}", vocab, render_transcript)


@cache
def gguf_counter() -> Callable[[str], int] | str:
    """A token counter from the embedded model's GGUF vocabulary, or why there is none."""
    try:
        import llama_cpp
    except ImportError:
        return "llama-cpp-python is not installed"

    def load() -> Any:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        logger = logging.getLogger("llama-cpp-python")  # its loader logs every field otherwise
        level = logger.level
        logger.setLevel(logging.CRITICAL)
        try:
            model = llama_cpp.llama_model_load_from_file(str(model_path()).encode(), params)
        finally:
            logger.setLevel(level)
        if not model:
            raise OSError("llama.cpp could not read the GGUF file")
        return model

    model = in_thread(load, "the embedded model's vocabulary")
    if isinstance(model, str):
        return model
    vocab = llama_cpp.llama_model_get_vocab(model)
    lock = threading.Lock()

    def count(text: str) -> int:
        data = text.encode("utf-8")
        size = len(data) + 8  # a token is at least one byte
        buffer = (llama_cpp.llama_token * size)()
        with lock:
            n = llama_cpp.llama_tokenize(vocab, data, len(data), buffer, size, False, False)
        return int(n) if n >= 0 else -int(n)

    return count
