"""Errors users can act on.

Every message names the bad value and the fix. The CLI turns any `AikitError` into one line
on stderr and exit code 2 (see `aikit.cli`); library users catch the subclass they care about.
"""

from __future__ import annotations


class AikitError(Exception):
    """Base class: a mistake or condition the user can fix; its message says how."""


class ConfigError(AikitError):
    """A setting (argument, `AIKIT_*`/`OPENAI_*` variable, `.env` entry) has a bad value."""


class EndpointError(AikitError):
    """The configured model endpoint cannot be reached or refused the request."""


class LocalModelError(AikitError):
    """The embedded model (llama.cpp server) is missing, failed to start or to stop."""


class CacheMissError(AikitError):
    """`AIKIT_CACHE=replay` and the response store holds no answer for this request."""


class TemplateError(AikitError):
    """A prompt template is invalid, unsafe, or rendered with missing/unknown variables."""


class StorageError(AikitError):
    """A runs folder, shipped file or index location (path or fsspec URL) cannot be used."""


class StructuredOutputError(AikitError):
    """A structured answer failed validation twice (raised only when asked for)."""


__all__ = [
    "AikitError",
    "CacheMissError",
    "ConfigError",
    "EndpointError",
    "LocalModelError",
    "StorageError",
    "StructuredOutputError",
    "TemplateError",
]
