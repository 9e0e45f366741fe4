"""Errors users can act on: every class aikit raises, all here.

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


class TemplateError(AikitError):
    """A prompt template is invalid, unsafe, or rendered with missing/unknown variables."""


class StorageError(AikitError):
    """A runs folder, shipped file or index location (path or fsspec URL) cannot be used."""


class StructuredOutputError(AikitError):
    """A structured answer failed validation twice (raised only when asked for)."""


class RecordError(AikitError):
    """`aikit.record` got a bad name or a value that cannot be kept in a run."""


class ParameterError(AikitError):
    """A notebook parameter is unknown, has the wrong type, or a secret is passed in clear."""


class PlaybookError(AikitError):
    """A playbook file is malformed or refers to something that does not exist."""


class KernelMissingError(AikitError):
    """A notebook names a Jupyter kernel that is not installed."""


class ExecutorError(AikitError):
    """A run cannot be executed where it was asked to (executor, Dask scheduler)."""


class RunError(AikitError):
    """A notebook run failed in a cell; `cell`, `ename`, `evalue` say where and why
    (papermill's fields), and the message is the one line the CLI prints."""

    def __init__(
        self,
        message: str,
        *,
        notebook: str | None = None,
        cell: int | None = None,
        ename: str | None = None,
        evalue: str | None = None,
    ) -> None:
        super().__init__(message)
        self.notebook, self.cell, self.ename, self.evalue = notebook, cell, ename, evalue


class RegistryError(AikitError):
    """A run record (`run.json`) is missing, unreadable, too new, or a run id is ambiguous."""


class RunRecordError(RegistryError):
    """A run record (`run.json`) cannot be read: not JSON, not a record, or a bad field (the
    registry skips such a file with one warning naming it)."""


class RagError(AikitError):
    """A RAG building block got something it cannot use; the message says how to fix it."""


class LoadError(RagError):
    """A document cannot be read (missing, unreadable, not the format its name says)."""


class EvalError(AikitError):
    """An evaluation was set up wrongly (a metric, a task, repeats, a comparison, a gate)."""


class DatasetError(EvalError):
    """An eval dataset file or frame is malformed; the message names the file and the row."""


class MissingDependencyError(AikitError):
    """An optional dependency is not installed; the message gives the `pip install` line."""


class GuardError(AikitError):
    """A guard blocked a text (`verdict` says which guard and why; the message never holds the
    text itself), or a guard is set up wrongly (an unknown name, a guard that is no function)."""

    def __init__(self, message: str, *, verdict: Any = None, stage: str | None = None) -> None:
        super().__init__(message)
        self.verdict, self.stage = verdict, stage


class ApiError(AikitError):
    """`aikit api`: a notebook serves no endpoint, an unsafe bind, a bad endpoint function."""


__all__ = [
    "AikitError",
    "ApiError",
    "CacheMissError",
    "ConfigError",
    "DatasetError",
    "EndpointError",
    "EvalError",
    "ExecutorError",
    "GuardError",
    "KernelMissingError",
    "LoadError",
    "LocalModelError",
    "MissingDependencyError",
    "ParameterError",
    "PlaybookError",
    "RagError",
    "RecordError",
    "RegistryError",
    "RunError",
    "RunRecordError",
    "StorageError",
    "StoreError",
    "StructuredOutputError",
    "TemplateError",
]
