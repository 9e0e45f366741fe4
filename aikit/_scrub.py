"""Keeping secrets out of what aikit saves and prints.

A secret is printed in many forms: as it is (`print`), inside a `repr` (quotes and backslashes
escaped), inside JSON (`json.dumps`, a notebook's own file), HTML-escaped (a DataFrame's HTML),
and in combinations of these (the `repr` of a list inside an HTML table). `forms(secret)` lists
every such form up to three layers deep; `scrub_text` replaces each (longest first) with
`secret:NAME`. `scrub_json` does it inside the *string values* of a decoded JSON document (a
notebook, a run record), so a short secret such as `1` can never corrupt a number, a key or the
document's syntax. Structural strings of a notebook (`output_type`, `cell_type`, cell ids, the
kernelspec, papermill's and the kernel's timing metadata) are left alone for the same reason.

Secret references: a parameter whose value is `secret:ENV_NAME` names an environment variable
instead of holding the secret (`is_secret_ref`, `secret_env`, `secret_envs`, `secret_values`);
the runner, `aikit api` and the CLI read them through these helpers.

`redact_url` hides the credentials and query string of a URL (`http://user:pass@host/v1?key=x`
-> `http://***@host/v1?***`); `redact_urls` does it to every URL inside a message.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SECRET_PREFIX = "secret:"


def is_secret_ref(value: Any) -> bool:
    """Whether a parameter value is a `secret:ENV_NAME` reference."""
    return isinstance(value, str) and value.startswith(SECRET_PREFIX)


def secret_env(value: Any) -> str:
    """The environment variable a `secret:ENV_NAME` reference names."""
    return str(value)[len(SECRET_PREFIX) :]


def secret_envs(parameters: Mapping[str, Any]) -> dict[str, str]:
    """Parameter name -> environment variable, for each parameter that is a secret reference."""
    return {k: secret_env(v) for k, v in parameters.items() if is_secret_ref(v)}


def secret_values(parameters: Mapping[str, Any]) -> dict[str, str]:
    """Environment variable -> its value now ("" if unset), for each secret reference: what a
    `Scrubber` of these parameters replaces."""
    import os

    return {env: os.environ.get(env, "") for env in secret_envs(parameters).values()}


# Notebook fields whose string values are structure, not content.
STRUCTURAL_KEYS = frozenset(
    {"output_type", "cell_type", "id", "kernelspec", "language_info", "papermill", "execution"}
)


def _repr_inner(text: str) -> str:
    return repr(text)[1:-1]


def _repr_inner_other_quote(text: str) -> str:
    # repr() picks the quote the text does not contain; a string holding both quotes, or one
    # embedded in a larger repr, is escaped with the other quote too.
    return text.encode("unicode_escape").decode("ascii").replace("'", "\\'")


def _repr_inner_double(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def _pandas_escaped(text: str) -> str:
    # pandas prints a cell's tab and line breaks as `\t`, `\n`, `\r` and nothing else escaped.
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


LAYERS: tuple[Callable[[str], str], ...] = (
    _repr_inner,
    _repr_inner_other_quote,
    _repr_inner_double,
    lambda t: json.dumps(t)[1:-1],
    lambda t: json.dumps(t, ensure_ascii=False)[1:-1],
    html.escape,
    lambda t: html.escape(t, quote=False),
    _pandas_escaped,
)
# A multi-line secret's lines are secrets too (a line-wise channel can split it), when at
# least this long; and a form cut short by an ellipsis (pandas' `max_colwidth`) is scrubbed
# from this many characters on.
MIN_PART = 8
MIN_CUT = 12
_ELLIPSES = ("...", "\u2026")


def forms(secret: str, depth: int = 3) -> list[str]:
    """Every form of `secret` through up to `depth` escaping layers, longest first."""
    found = {secret}
    frontier = {secret}
    for _ in range(depth):
        frontier = {layer(text) for text in frontier for layer in LAYERS} - found
        found |= frontier
    return sorted((f for f in found if f), key=len, reverse=True)


class Scrubber:
    """Replaces every form of each secret with `secret:NAME`."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        pairs: list[tuple[str, str]] = []
        for name, value in secrets.items():
            if value:
                pairs += [(form, f"{SECRET_PREFIX}{name}") for form in forms(value)]
                for part in _lines(value):
                    pairs += [(form, f"{SECRET_PREFIX}{name}") for form in forms(part, depth=2)]
        pairs.sort(key=lambda p: len(p[0]), reverse=True)
        self._pairs = pairs
        self._pattern = (
            re.compile("|".join(re.escape(form) for form, _ in pairs)) if pairs else None
        )
        self._names = dict(pairs)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        """`text` with every form of every secret replaced."""
        if self._pattern is None or not text:
            return text
        return self._cut_short(self._pattern.sub(lambda m: self._names[m.group(0)], text))

    def _cut_short(self, text: str) -> str:
        """`text` without the start of a form cut short by an ellipsis (`-----BEGIN KEY---...`)."""
        if not any(mark in text for mark in _ELLIPSES):
            return text
        for form, name in self._pairs:
            if len(form) <= MIN_CUT:
                break  # sorted longest first
            start = text.find(form[:MIN_CUT])
            while start != -1:
                length = MIN_CUT
                while (
                    length < len(form) and text[start + length : start + length + 1] == form[length]
                ):
                    length += 1
                if text.startswith(_ELLIPSES, start + length):
                    text = text[:start] + name + text[start + length :]
                start = text.find(form[:MIN_CUT], start + 1)
        return text

    def json(self, value: Any, *, notebook: bool = False) -> Any:
        """A copy of a decoded JSON value with its string values scrubbed (keys untouched;
        with `notebook`, structural fields untouched too)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            joined = "".join(value) if all(isinstance(v, str) for v in value) else None
            if joined is not None and len(value) > 1 and joined.splitlines(True) == value:
                # nbformat's multi-line text (a list of lines): a secret may span lines
                return self.text(joined).splitlines(True)
            return [self.json(v, notebook=notebook) for v in value]
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                keep = notebook and (
                    key in STRUCTURAL_KEYS or (key == "name" and value.get("output_type"))
                )
                out[key] = item if keep else self.json(item, notebook=notebook)
            return out
        return value


def _lines(value: str) -> list[str]:
    """The lines of a multi-line secret long enough to be secrets on their own."""
    parts = [line.strip() for line in value.splitlines()]
    return [part for part in parts if len(part) >= MIN_PART] if len(parts) > 1 else []


def scrub_text(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with every form of each secret value replaced by `secret:NAME`."""
    return Scrubber(secrets).text(text)


def scrub_json(value: Any, secrets: Mapping[str, str], *, notebook: bool = False) -> Any:
    """A decoded JSON value with every form of each secret replaced inside string values."""
    return Scrubber(secrets).json(value, notebook=notebook)


# -- URLs ------------------------------------------------------------------------------------
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()]+")


def redact_url(url: str) -> str:
    """`url` without its credentials or query string (each replaced by `***`)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url.split("://", 1)[0] + "://***"
    if not parts.netloc:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    if parts.username is not None or parts.password is not None:
        netloc = f"***@{netloc}"
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_urls(text: str) -> str:
    """`text` with every URL in it redacted by `redact_url`."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)
