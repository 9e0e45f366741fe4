"""Prompt-prefix reuse that never changes an answer (the embedded server's speed, issue 14).

Most prompts the embedded model sees share a long prefix: the transcript's intro and examples,
a notebook's few-shot block, a RAG instruction. llama-cpp-python keeps the previous prompt's
KV cache and evaluates only the new suffix, but then the suffix is evaluated in a batch of
another shape than when the same prompt comes first, the float sums differ, and a greedy answer
can flip between near-tied tokens: temperature 0 with a seed would answer differently
depending on what was asked before.

`StablePrefix` makes the batch shapes a function of the prompt's tokens alone. A prompt is
evaluated in chunks that end at *cut points*: a newline token at least `min_chunk` tokens (or a
quarter of the position, so a long prompt is not cut into many small decode calls) after the
previous cut, or `max_chunk` tokens after it. A cut depends only on the tokens before it,
so two prompts that share a prefix share its cuts, and the KV cache up to the last shared cut
is bit-for-bit what a fresh evaluation computes. Only that much is reused; the rest is
evaluated chunk by chunk from there, exactly as from scratch. Generated tokens (evaluated one
at a time) are never reused. `tests/test_local_live.py` checks that the answers are the same
in any order and that the reuse happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

MIN_CHUNK = 16  # each chunk is one decode call, which reads every weight once: not too small


class StablePrefix:
    """Installs itself on a `llama_cpp.Llama`: wraps its `generate` and `eval`."""

    def __init__(self, llama: Any, min_chunk: int = MIN_CHUNK) -> None:
        self.llama = llama
        self.min_chunk = min_chunk
        self.max_chunk = int(llama.n_batch)
        self.breaks = frozenset(
            token for text in (b"\n", b"\n\n", b"\n\n\n") for token in llama.tokenize(text, False)
        )
        self.canonical = 0  # KV positions [0, canonical) were evaluated in canonical chunks
        self.reused = 0  # prompt tokens taken from the cache (for tests and the benchmark)
        self._prompt_next, self._prompt_end = False, 0
        self._eval: Callable[[Sequence[int]], None] = llama.eval
        self._generate: Callable[..., Iterator[int]] = llama.generate
        llama.eval = self.eval
        llama.generate = self.generate

    def cuts(self, tokens: Sequence[int]) -> list[int]:
        """The canonical chunk ends in `tokens` (positions after a token; ascending)."""
        found, start = [], 0
        for i, token in enumerate(tokens):
            length = i + 1 - start
            short = length < max(self.min_chunk, start // 4)
            if length >= self.max_chunk or (token in self.breaks and not short):
                found.append(i + 1)
                start = i + 1
        return found

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[int]:
        """`Llama.generate`, with its first `eval` (the prompt) made canonical."""
        self.expect_prompt(len(args[0] if args else kwargs["tokens"]))
        return (yield from self._generate(*args, **kwargs))

    def expect_prompt(self, length: int) -> None:
        """The next `eval` that ends at `length` tokens evaluates a prompt."""
        self._prompt_next, self._prompt_end = True, length

    def eval(self, tokens: Sequence[int]) -> None:
        """`Llama.eval`: a prompt from the last canonical cut it shares with the cache."""
        llama = self.llama
        # The prompt's eval ends where the prompt does; a generated token comes after it (also
        # when an exact cache hit let generate sample before evaluating anything).
        is_prompt = self._prompt_next and int(llama.n_tokens) + len(tokens) == self._prompt_end
        self._prompt_next = False
        if not is_prompt:  # a generated token: evaluated alone, never reused
            self._eval(tokens)
            return
        kept = int(llama.n_tokens)  # what llama-cpp-python's own prefix match kept
        prompt = [int(t) for t in llama.input_ids[:kept]] + [int(t) for t in tokens]
        cuts = self.cuts(prompt)
        start = max([0, *(c for c in cuts if c <= min(kept, self.canonical))])
        llama.n_tokens = start
        self.reused += start
        position = start
        for end in [*(c for c in cuts if c > start), len(prompt)]:
            if end > position:
                self._eval(prompt[position:end])
                position = end
        self.canonical = cuts[-1] if cuts else 0
