"""What a guard is, what it returns, and how guards compose.

A guard is a plain function `(text, *, context=None) -> Verdict`. `check(guards, text)` runs
them in order: a redacting verdict hands its `redacted` text to the next guard, a blocking one
stops the run. A `Guards` pair holds the input set (run before a model or endpoint sees the
text) and the output set (run before an answer leaves).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from aikit.errors import GuardError

Action = Literal["allow", "block", "redact", "flag"]
Stage = Literal["input", "output", "both"]
STAGE_ATTRIBUTE = "__aikit_guard_stage__"


@dataclass(frozen=True)
class Verdict:
    """One guard's decision on one text.

    `allowed` is False only for `block`. `action`: `allow` (nothing found), `block`, `redact`
    (`redacted` holds the text with the findings replaced) or `flag` (found, let through).
    `reasons` name what was found and where, never the found text itself (so a verdict can be
    logged). `score` is the guard's confidence in [0, 1]; `latency_s` what the check took.
    """

    guard: str
    allowed: bool = True
    action: Action = "allow"
    reasons: tuple[str, ...] = ()
    score: float = 0.0
    redacted: str | None = None
    latency_s: float = 0.0

    def to_log(self) -> dict[str, Any]:
        """The verdict as the request log keeps it (no text, only what was decided)."""
        return {
            "guard": self.guard,
            "action": self.action,
            "score": round(self.score, 4),
            "reasons": list(self.reasons),
            "latency_ms": round(self.latency_s * 1000, 3),
        }


class Guard(Protocol):
    """`(text, *, context=None) -> Verdict`; `context` carries what a guard may compare with
    (`system_prompt`, `template`, `source`)."""

    def __call__(self, text: str, *, context: Mapping[str, Any] | None = None) -> Verdict: ...


def guard(
    name: str, *, stage: Stage = "both"
) -> Callable[[Callable[..., Verdict]], Callable[..., Verdict]]:
    """Name a guard function and say where it belongs (`input`, `output` or `both`)."""

    def mark(function: Callable[..., Verdict]) -> Callable[..., Verdict]:
        function.__name__ = name
        setattr(function, STAGE_ATTRIBUTE, stage)
        return function

    return mark


def stage_of(g: Callable[..., Verdict]) -> Stage:
    stage: Stage = getattr(g, STAGE_ATTRIBUTE, "both")
    return stage


def name_of(g: Callable[..., Any]) -> str:
    return str(getattr(g, "__name__", None) or type(g).__name__)


@dataclass(frozen=True)
class Checked:
    """What `check` found: the text to go on with (redacted if a guard redacted), every
    verdict in order, and the blocking verdict (None when the text may pass)."""

    text: str
    verdicts: tuple[Verdict, ...] = ()
    blocked: Verdict | None = None

    @property
    def allowed(self) -> bool:
        return self.blocked is None


def check(
    guards: Iterable[Callable[..., Verdict]],
    text: str,
    *,
    context: Mapping[str, Any] | None = None,
) -> Checked:
    """Run `guards` on `text` in order; stop at the first block."""
    verdicts: list[Verdict] = []
    for g in guards:
        started = time.perf_counter()
        verdict = g(text, context=context)
        if not isinstance(verdict, Verdict):
            raise GuardError(
                f"guard {name_of(g)!r} returned {type(verdict).__name__}, not a Verdict;"
                " return aikit.guards.Verdict(...)"
            )
        if not verdict.latency_s:
            verdict = replace(verdict, latency_s=time.perf_counter() - started)
        verdicts.append(verdict)
        if not verdict.allowed:
            return Checked(text, tuple(verdicts), verdict)
        if verdict.action == "redact" and verdict.redacted is not None:
            text = verdict.redacted
    return Checked(text, tuple(verdicts), None)


def blocked_message(where: str, verdict: Verdict) -> str:
    """The one-line error of a blocked text (names the guard and why, never the text)."""
    why = "; ".join(verdict.reasons) or "no reason given"
    return (
        f"{where} blocked by guard {verdict.guard!r} (score {verdict.score:.2f}: {why});"
        " change the text, or drop that guard if this is a false positive"
    )


def _acting(g: Callable[..., Verdict], action: Literal["block", "flag"]) -> Callable[..., Verdict]:
    """The same guard, but whatever it finds gets `action` (block or flag)."""

    def wrapped(text: str, *, context: Mapping[str, Any] | None = None) -> Verdict:
        v = g(text, context=context)
        if v.action in ("redact", "flag", "block") and v.action != action:
            return replace(v, allowed=action == "flag", action=action, redacted=None)
        return v

    wrapped.__name__ = name_of(g)
    setattr(wrapped, STAGE_ATTRIBUTE, stage_of(g))
    return wrapped


def blocking(g: Callable[..., Verdict]) -> Callable[..., Verdict]:
    """The same guard, but anything it finds blocks the text (instead of redact or flag)."""
    return _acting(g, "block")


def flagging(g: Callable[..., Verdict]) -> Callable[..., Verdict]:
    """The same guard, but it only flags what it finds (the text passes unchanged)."""
    return _acting(g, "flag")


@dataclass(frozen=True)
class Guards:
    """An input set and an output set of guards. `passages` says what `rag.answer` does with
    a retrieved passage the input set blocks: `drop` it (default) or `fence` it (kept, marked
    as untrusted)."""

    input: tuple[Callable[..., Verdict], ...] = field(default_factory=tuple)
    output: tuple[Callable[..., Verdict], ...] = field(default_factory=tuple)
    passages: Literal["drop", "fence"] = "drop"

    def __post_init__(self) -> None:
        if self.passages not in ("drop", "fence"):
            raise GuardError(f"passages={self.passages!r}: use 'drop' or 'fence'")
        object.__setattr__(self, "input", tuple(self.input))
        object.__setattr__(self, "output", tuple(self.output))

    def __bool__(self) -> bool:
        return bool(self.input or self.output)

    def names(self) -> dict[str, list[str]]:
        return {
            "input": [name_of(g) for g in self.input],
            "output": [name_of(g) for g in self.output],
        }


GuardsLike = Guards | Sequence[Callable[..., Verdict] | str] | None


def as_guards(value: Any) -> Guards:
    """`Guards` from a `Guards`, None, or a list of guards and built-in names (each put in
    the set(s) its stage says: `prompt_injection` guards input, `pii` both)."""
    from aikit.guards import builtin

    if value is None:
        return Guards()
    if isinstance(value, Guards):
        return value
    if isinstance(value, str) or callable(value):
        value = [value]
    inputs, outputs = [], []
    for item in value:
        g = builtin(item) if isinstance(item, str) else item
        if not callable(g):
            raise GuardError(
                f"guards: {item!r} is not a guard; pass functions (text, *, context) -> Verdict"
                " or built-in names such as 'pii'"
            )
        stage = stage_of(g)
        if stage in ("input", "both"):
            inputs.append(g)
        if stage in ("output", "both"):
            outputs.append(g)
    return Guards(tuple(inputs), tuple(outputs))


def caught(output: Any) -> bool:
    """Whether a guard's output (a `Verdict`, or a bool) found something."""
    if isinstance(output, Verdict):
        return output.action != "allow"
    return bool(output)


def detected(output: Any, expected: Any) -> float | None:
    """Metric for `evals.evaluate(guard, ...)`: 1 when an attack (`expected` "attack" or
    True) is caught, 0 when missed; benign samples are unscored. Its mean is the recall."""
    if expected in ("attack", True, 1, "pii"):
        return float(caught(output))
    return None


def false_positive(output: Any, expected: Any) -> float | None:
    """Metric: 1 when a benign sample (`expected` "benign" or False) is caught; attacks are
    unscored. Its mean is the false-positive rate."""
    if expected in ("benign", False, 0, "none"):
        return float(caught(output))
    return None
