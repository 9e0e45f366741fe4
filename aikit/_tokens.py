"""Counting prompt tokens before a call, and the most a call can cost, for `aikit.estimate`
and the batch budget.

- OpenAI models: tiktoken, plus the chat format's per-message overhead. tiktoken downloads its
  encodings on first use (then caches them; `TIKTOKEN_CACHE_DIR`); when that fails (offline),
  the count falls back to UTF-8 bytes.
- The embedded model: its own GGUF vocabulary (llama.cpp, vocabulary only, no weights), on the
  transcript the local server renders (`aikit._llama_server.render_transcript`).
- Fallback: UTF-8 bytes, an upper bound for any byte-level BPE tokenizer (every token is at
  least one byte), so a budget stays safe, if pessimistic.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from aikit.settings import Settings
from aikit.usage import Usage, cost_of

LOAD_TIMEOUT_S = 10.0
PROMPT_MARGIN, PROMPT_SLACK = 1.1, 8  # reserve for a tokenizer that counts a little differently
REASK_SLACK = 256  # tokens of a structured-output re-ask: the instruction and the error
TOKENS_PER_MESSAGE = 3  # OpenAI chat format: <|start|>role ... <|end|>
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def _utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclass(frozen=True)
class TokenCounter:
    """Counts the prompt tokens of a chat request for one model."""

    name: str
    count: Callable[[str], int]
    transcript: bool = False  # the embedded model: count the rendered transcript

    def prompt_tokens(self, messages: list[dict[str, Any]], extra: Any = None) -> int:
        """Prompt tokens of `messages`; `extra` (a schema, tools) counts as JSON text."""
        if self.transcript:
            from aikit._llama_server import render_transcript

            return self.count(render_transcript(messages)) + 1  # + BOS
        total = REPLY_PRIMING
        for message in messages:
            total += TOKENS_PER_MESSAGE + self.count(str(message.get("role", "")))
            total += self.count(_text(message.get("content")))
            if message.get("name"):
                total += 1 + self.count(str(message["name"]))
        if extra is not None:
            total += self.count(json.dumps(extra, sort_keys=True))
        return total


def counter_for(settings: Settings, model: str) -> TokenCounter:
    """The best counter available offline for `model` on `settings`' provider."""
    if settings.provider == "local":
        vocab = _gguf_vocab()
        if isinstance(vocab, str):
            return TokenCounter(f"utf-8 bytes (upper bound; {vocab})", _utf8_bytes, True)
        return TokenCounter(f"gguf vocabulary of {model}", vocab, True)
    encoding_name, known = _encoding_name(model)
    encoding = _tiktoken(encoding_name)
    if isinstance(encoding, str):
        return TokenCounter(f"utf-8 bytes (upper bound; {encoding})", _utf8_bytes)
    return TokenCounter(f"tiktoken {encoding_name}{'' if known else ', approximate'}", encoding)


def _encoding_name(model: str) -> tuple[str, bool]:
    """tiktoken's encoding for `model`, and whether tiktoken knows the model."""
    try:
        import tiktoken

        return str(tiktoken.encoding_name_for_model(model)), True
    except (ImportError, KeyError):
        return "o200k_base", False  # the current OpenAI encoding; an approximation for others


def _in_thread(load: Callable[[], Any], what: str) -> Any:
    """`load()` with a time limit (tiktoken's download has none); a string says what failed."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(load())
        except Exception as exc:
            result.append(f"{what} did not load: {type(exc).__name__}")

    thread = threading.Thread(target=run, name="aikit-tokenizer", daemon=True)
    thread.start()
    thread.join(LOAD_TIMEOUT_S)
    return result[0] if result else f"{what} did not load in {LOAD_TIMEOUT_S:.0f} s"


@cache
def _tiktoken(encoding_name: str) -> Callable[[str], int] | str:
    """A token counter for a tiktoken encoding, or why there is none."""
    try:
        import tiktoken
    except ImportError:
        return "tiktoken is not installed"
    loaded = _in_thread(lambda: tiktoken.get_encoding(encoding_name), f"tiktoken {encoding_name}")
    if isinstance(loaded, str):
        return loaded
    return lambda text: len(loaded.encode(text, disallowed_special=()))


@cache
def _gguf_vocab() -> Callable[[str], int] | str:
    """A token counter from the embedded model's GGUF vocabulary, or why there is none."""
    try:
        import llama_cpp

        from aikit.local import model_path
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

    model = _in_thread(load, "the embedded model's vocabulary")
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


def completion_bound(max_tokens: int | None, params: Mapping[str, Any]) -> int | None:
    """The most answer tokens one call can bill (`max_tokens` times `n`), None if unbounded."""
    bound = max_tokens if max_tokens is not None else params.get("max_completion_tokens")
    return None if bound is None else int(bound) * int(params.get("n") or 1)


def upper_cost(model: str, prompt: int, completion: int, structured: bool) -> float:
    """The most one row can cost (priced models only): a call, and a re-ask if structured."""
    prompt = math.ceil(prompt * PROMPT_MARGIN) + PROMPT_SLACK
    cost = cost_of(model, Usage(prompt, completion)) or 0.0
    if structured:
        reask = Usage(prompt + completion + REASK_SLACK, completion)
        cost += cost_of(model, reask) or 0.0
    return cost
