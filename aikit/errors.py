"""Errors users can act on.

Every message names the bad value and the fix. The CLI turns any `AikitError` into one line
on stderr and exit code 2 (see `aikit.cli`); library users catch the subclass they care about.
"""

from __future__ import annotations

from typing import Any


class AikitError(Exception):
    """Base class: a mistake or condition the user can fix; its message says how.

    `frame` is set when `aikit.batch` stops early on this error: a DataFrame like the one it
    returns, with every answer received before the stop (the rest of the rows say `not run`).
    """

    frame: Any = None


class ConfigError(AikitError):
    """A setting (argument, `AIKIT_*`/`OPENAI_*` variable, `.env` entry) has a bad value."""


class EndpointError(AikitError):
    """The configured model endpoint cannot be reached or refused the request."""


class LocalModelError(AikitError):
    """The embedded model (llama.cpp server) is missing, failed to start or to stop."""


class CacheMissError(AikitError):
    """`AIKIT_CACHE=replay` and the response store holds no answer for this request."""


class StoreError(ConfigError):
    """A SQLite file of aikit's (the response store, the embedding cache) is corrupt or cannot
    be written; the message names the file and the fix."""


class RunRecordError(AikitError):
    """A run record (`run.json`) cannot be read: not JSON, not a record, or a bad field."""


class TemplateError(AikitError):
    """A prompt template is invalid, unsafe, or rendered with missing/unknown variables."""


class StructuredOutputError(AikitError):
    """A structured answer failed validation twice (raised only when asked for)."""


__all__ = [
    "AikitError",
    "CacheMissError",
    "ConfigError",
    "EndpointError",
    "LocalModelError",
    "RunRecordError",
    "StoreError",
    "StructuredOutputError",
    "TemplateError",
]
