"""The arguments of a chat call, checked before anything is sent: names that
`chat.completions.create` takes (a misspelt one suggests the right name), values the endpoint
would refuse or misread (`temperature='hot'`, `max_tokens=0`, `nan`), and what the embedded
model cannot do (`logprobs`). `aikit.llm` and `aikit.batch` call `check_params` first."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any, get_type_hints

from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from aikit.errors import ConfigError

# Parameters `achat` accepts in **params: everything chat.completions.create takes.
SDK_PARAMS = frozenset(get_type_hints(CompletionCreateParamsBase)) | {
    "extra_headers",
    "extra_query",
    "extra_body",
    "timeout",
}
_OWN_PARAMS = frozenset({"model", "messages", "temperature", "max_tokens", "response_format"})


def check_params(
    params: Mapping[str, Any],
    *,
    temperature: Any = None,
    max_tokens: Any = None,
    local: bool = False,
) -> None:
    """Reject a `chat.completions.create` argument that does not exist (suggesting the name),
    or a value the endpoint would refuse or misread (`temperature='hot'`, `max_tokens=0`,
    `nan`); with `local`, what the embedded model cannot do (`logprobs`)."""
    for name in params:
        if name in _OWN_PARAMS or name not in SDK_PARAMS:
            close = difflib.get_close_matches(name, sorted(SDK_PARAMS | _OWN_PARAMS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see openai chat.completions.create"
            raise ConfigError(f"unknown chat parameter {name!r}; {hint}")
    values = {**params, "temperature": temperature, "max_tokens": max_tokens}
    for name, value in values.items():
        rule = _VALUE_RULES.get(name)
        if value is not None and rule is not None and not rule[0](value):
            raise ConfigError(f"{name}={value!r} is not valid; pass {rule[1]}")
    if local and (params.get("logprobs") or params.get("top_logprobs") is not None):
        name = "logprobs" if params.get("logprobs") else "top_logprobs"
        raise ConfigError(
            f"{name}={params[name]!r} is not available on the embedded model (its"
            " server keeps no per-token logits); drop logprobs/top_logprobs, or set"
            " AIKIT_PROVIDER=openai for an endpoint that returns them"
        )


def _number_in(low: float, high: float) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and math.isfinite(value) and low <= value <= high

    return check


def _whole(low: int, high: float = math.inf) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    return check


def _stop(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(v, str) and v for v in value)
    )


# name -> (check, what to pass instead): the ranges of the OpenAI API reference.
_VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": (_number_in(0, 2), "a number from 0 to 2 such as 0.7"),
    "top_p": (_number_in(0, 1), "a number from 0 to 1 such as 0.9"),
    "max_tokens": (_whole(1), "a whole number >= 1 such as 256"),
    "max_completion_tokens": (_whole(1), "a whole number >= 1 such as 256"),
    "n": (_whole(1, 128), "a whole number from 1 to 128"),
    "presence_penalty": (_number_in(-2, 2), "a number from -2 to 2"),
    "frequency_penalty": (_number_in(-2, 2), "a number from -2 to 2"),
    "seed": (_whole(-(2**63), 2**63 - 1), "a whole number such as 42"),
    "logprobs": (lambda v: isinstance(v, bool), "True or False"),
    "top_logprobs": (_whole(0, 20), "a whole number from 0 to 20"),
    "stop": (_stop, "a non-empty string or a list of them"),
    "timeout": (_number_in(1e-9, math.inf), "a number of seconds > 0 such as 30"),
}
