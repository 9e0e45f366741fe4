"""Guards on an answer's shape and content: `system_prompt_leak`, `schema`, `topic`, and the
two plain checks `invisible_text` and `max_length`."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aikit.errors import GuardError
from aikit.guards._core import Verdict, guard

MAX_CHARS = 20_000
LEAK_WORDS = 8  # a span this many words long, copied from the system prompt, is a leak
_WORD = re.compile(r"\w+", re.U)


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) == "Cf" or 0xE0000 <= ord(ch) <= 0xE007F


@guard("invisible_text")
def invisible_text(text: str, *, context: Mapping[str, Any] | None = None) -> Verdict:
    """Invisible characters (zero-width, bidirectional controls, Unicode tags): removed."""
    count = sum(1 for ch in text if _invisible(ch))
    if not count:
        return Verdict("invisible_text")
    return Verdict(
        "invisible_text",
        action="redact",
        reasons=(f"{count} invisible characters",),
        score=1.0,
        redacted="".join(ch for ch in text if not _invisible(ch)),
    )


def max_length(limit: int = MAX_CHARS) -> Callable[..., Verdict]:
    """A guard that blocks texts longer than `limit` characters."""
    if not isinstance(limit, int) or limit < 1:
        raise GuardError(f"max_length limit {limit!r} must be a positive int, e.g. 20000")

    @guard("max_length")
    def check(text: str, *, context: Mapping[str, Any] | None = None) -> Verdict:
        if len(text) <= limit:
            return Verdict("max_length", score=len(text) / limit)
        return Verdict(
            "max_length",
            allowed=False,
            action="block",
            reasons=(f"{len(text)} characters, over {limit}",),
            score=1.0,
        )

    return check


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def leaked_span(answer: str, secret: str) -> int:
    """The longest run of words of `secret` that `answer` repeats (in words)."""
    a, s = _words(answer), _words(secret)
    if not a or not s:
        return 0
    best, previous = 0, [0] * (len(s) + 1)
    for x in a:
        row = [0] * (len(s) + 1)
        for j, y in enumerate(s, start=1):
            if x == y:
                row[j] = previous[j - 1] + 1
                best = max(best, row[j])
        previous = row
    return best


def system_prompt_leak(
    system_prompt: str | None = None, *, min_words: int = LEAK_WORDS
) -> Callable[..., Verdict]:
    """A guard that blocks an answer repeating `min_words` or more words in a row of the
    system prompt (or of `context["system_prompt"]` / `context["template"]` when called)."""

    @guard("system_prompt_leak", stage="output")
    def check(text: str, *, context: Mapping[str, Any] | None = None) -> Verdict:
        sources = [system_prompt] if system_prompt else []
        sources += [
            str(context[k]) for k in ("system_prompt", "template") if context and context.get(k)
        ]
        span = max((leaked_span(text, s) for s in sources), default=0)
        if span < min_words:
            return Verdict("system_prompt_leak", score=span / min_words if sources else 0.0)
        return Verdict(
            "system_prompt_leak",
            allowed=False,
            action="block",
            reasons=(f"repeats {span} words of the system prompt in a row",),
            score=1.0,
        )

    return check


def schema(model: Any) -> Callable[..., Verdict]:
    """A guard that blocks an answer that does not parse as `model` (a pydantic model or any
    type pydantic validates, from JSON text)."""
    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(model)
    what = getattr(model, "__name__", str(model))

    @guard("schema", stage="output")
    def check(text: str, *, context: Mapping[str, Any] | None = None) -> Verdict:
        try:
            adapter.validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            return Verdict(
                "schema",
                allowed=False,
                action="block",
                reasons=(f"not a {what}: {where}: {first['msg']}",),
                score=1.0,
            )
        return Verdict("schema")

    return check


def topic(
    *,
    allow: Sequence[str] = (),
    deny: Sequence[str] = (),
    threshold: float = 0.35,
) -> Callable[..., Verdict]:
    """A guard on what a text is about, by embedding similarity (all-MiniLM-L6-v2, offline):
    blocked when it is closer than `threshold` (cosine) to a `deny` description, or when
    `allow` is given and it is not that close to any of them."""
    import numpy as np

    from aikit.guards._injection import _embedder

    if not allow and not deny:
        raise GuardError(
            "topic needs allow=[...] or deny=[...] descriptions, e.g. deny=['medical advice']"
        )
    allowed_v = _embedder().embed(list(allow), cache=False) if allow else None
    denied_v = _embedder().embed(list(deny), cache=False) if deny else None

    @guard("topic")
    def check(text: str, *, context: Mapping[str, Any] | None = None) -> Verdict:
        v = _embedder().embed([text], cache=False)[0]
        if denied_v is not None:
            sims = denied_v @ v
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                why = f"about {deny[j]!r} (similarity {sims[j]:.2f})"
                return Verdict("topic", False, "block", (why,), float(sims[j]))
        if allowed_v is not None:
            sims = allowed_v @ v
            if float(sims.max()) < threshold:
                why = f"off topic (best similarity {sims.max():.2f})"
                return Verdict("topic", False, "block", (why,), 1 - float(sims.max()))
        return Verdict("topic")

    return check
