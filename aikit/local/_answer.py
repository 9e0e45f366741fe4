"""What the embedded server answers, the same whole or streamed (issue 25): the text without the
whitespace around it, and the usage.

A transcript ends in "Assistant:" and the model's first token is a space, so the answer's text
is stripped. A whole answer is one piece, a stream many: both go through one `Trim`, so a
streamed answer's pieces join to exactly the whole answer's text. llama-cpp-python's stream
carries no usage (it ignores `stream_options`), so `TokenCount` counts each generation's
tokens as its whole answer's usage does (the prompt's tokens, the answer's up to and with its
stop sequence) and the stream's last chunk carries them; the client then stores a streamed
answer as the same request answered whole (`aikit/_stream.py` takes a stream's usage when the
server sends one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


class Trim:
    """An answer's text without the whitespace around it (`str.strip`), piece by piece: each
    piece gives what can be sent now, and whitespace that may end the answer waits until text
    follows it."""

    def __init__(self) -> None:
        self.started = False
        self.held = ""

    def piece(self, text: str) -> str:
        """What to send of the next piece of the answer (the pieces sent join to the stripped
        answer once the last one is given)."""
        if not self.started:
            text = text.lstrip()
            if not text:
                return ""
            self.started = True
        body = text.rstrip()
        if not body:
            self.held += text
            return ""
        sent, self.held = self.held + body, text[len(body) :]
        return sent


def trimmed(text: str) -> str:
    """A whole answer's text: one piece through `Trim`."""
    return Trim().piece(text)


class TokenCount:
    """Installs itself on a `llama_cpp.Llama` (wraps its `generate`): the prompt's and the
    answer's tokens of each generation, counted as llama-cpp-python's usage counts them (every
    generated token but an end-of-generation one, which ends the answer unsent)."""

    def __init__(self, llama: Any) -> None:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._is_end: Callable[[int], bool] = lambda token: bool(
            llama_cpp.llama_vocab_is_eog(vocab, token)
        )
        self._generate = llama.generate
        self.into: dict[str, int] | None = None  # the usage the next generation counts into
        llama.generate = self.generate

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[int]:
        """`Llama.generate`, counting into the usage given (`into`) when it starts."""
        usage = self.into if self.into is not None else {}
        usage.update(prompt_tokens=len(args[0] if args else kwargs["tokens"]), completion_tokens=0)
        tokens = self._generate(*args, **kwargs)
        sent: Any = None
        while True:
            try:
                token = tokens.send(sent)
            except StopIteration as end:
                return end.value  # type: ignore[no-any-return]
            if not self._is_end(token):
                usage["completion_tokens"] += 1
            sent = yield token

    def stream(self, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """A chat stream as the whole answer would be: its text through one `Trim`, and its
        usage on its last chunk (the one with a finish reason)."""
        trim, usage = Trim(), {"prompt_tokens": 0, "completion_tokens": 0}
        while True:
            self.into = usage  # its generation starts in the first `next` (several may alternate)
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                self.into = None
            finished = False
            for choice in chunk.get("choices", []):
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    delta["content"] = trim.piece(delta["content"])
                finished = finished or choice.get("finish_reason") is not None
            if finished:
                total = usage["prompt_tokens"] + usage["completion_tokens"]
                chunk["usage"] = {**usage, "total_tokens": total}
            yield chunk
