"""Guards: checks on what goes into a model and what comes out, measured like models.

A guard is a plain function `(text, *, context=None) -> Verdict`; `check(guards, text)` runs
a list of them; `Guards(input=..., output=...)` is what `aikit.chat`, `rag.answer` and
`@aikit.endpoint` take as `guards=` (a list of guards and built-in names works too: each goes
where its stage says). Built in, all offline (nothing is downloaded at run time):

- `pii`: e-mail, phone, IBAN, payment cards (Luhn), IP addresses, national identifiers;
  redacted (Presidio's pattern recognizers, no spaCy model).
- `secrets`: API keys and tokens; redacted.
- `prompt_injection`: a classifier trained on the project's labelled set, with rules; blocks.
- `system_prompt_leak(prompt)`, `schema(Model)`, `topic(allow=..., deny=...)`,
  `invisible_text`, `max_length(n)`.

`blocking(g)` and `flagging(g)` change what a guard does with a finding. `detected` and
`false_positive` are metrics for `evals.evaluate(guard, guards.labelled(split="test"), ...)`.
`block_rate(aikit.requests())` and `plot_block_rate` show how often each guard blocks, over time.
"""

from __future__ import annotations

from collections.abc import Callable

from aikit.errors import GuardError
from aikit.guards._core import (
    Checked,
    Guard,
    Guards,
    Verdict,
    as_guards,
    blocked_message,
    blocking,
    caught,
    check,
    detected,
    false_positive,
    flagging,
    guard,
)
from aikit.guards._data import labelled
from aikit.guards._injection import prompt_injection
from aikit.guards._monitor import block_rate, plot_block_rate
from aikit.guards._output import (
    invisible_text,
    max_length,
    schema,
    system_prompt_leak,
    topic,
)
from aikit.guards._pii import pii
from aikit.guards._secrets import secrets

# Built-in names (`aikit api --guard NAME`, guards=["pii"]) -> a guard with its defaults.
BUILTINS: dict[str, Callable[[], Callable[..., Verdict]]] = {
    "invisible_text": lambda: invisible_text,
    "max_length": max_length,
    "pii": lambda: pii,
    "prompt_injection": lambda: prompt_injection,
    "secrets": lambda: secrets,
    "system_prompt_leak": system_prompt_leak,
}


def builtin(name: str) -> Callable[..., Verdict]:
    """The built-in guard called `name`, with its defaults."""
    if name not in BUILTINS:
        raise GuardError(
            f"no built-in guard {name!r}; use one of {', '.join(sorted(BUILTINS))}"
            " (schema and topic need arguments: pass guards.schema(Model) in code)"
        )
    return BUILTINS[name]()


def default() -> Guards:
    """The default set: input `max_length`, `invisible_text`, `secrets`, `pii`,
    `prompt_injection`; output `pii`, `secrets`, `system_prompt_leak` (from the context)."""
    return Guards(
        input=(max_length(), invisible_text, secrets, pii, prompt_injection),
        output=(pii, secrets, system_prompt_leak()),
    )


__all__ = [
    "BUILTINS",
    "Checked",
    "Guard",
    "Guards",
    "Verdict",
    "as_guards",
    "block_rate",
    "blocked_message",
    "blocking",
    "builtin",
    "caught",
    "check",
    "default",
    "detected",
    "false_positive",
    "flagging",
    "guard",
    "invisible_text",
    "labelled",
    "max_length",
    "pii",
    "plot_block_rate",
    "prompt_injection",
    "schema",
    "secrets",
    "system_prompt_leak",
    "topic",
]
