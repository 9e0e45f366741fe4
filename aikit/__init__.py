"""aikit: a Jupyter-based team playbook and notebook kit for AI engineers.

The verbs most people need are here; the modules (`aikit.cache`, `aikit.local`, `aikit.prompts`,
`aikit.registry`, `aikit.runner`, `aikit.settings`, `aikit.usage`) hold the rest.
"""

from typing import TYPE_CHECKING, Any

from aikit.batch import abatch, batch, estimate
from aikit.errors import AikitError
from aikit.record import record
from aikit.usage import usage

if TYPE_CHECKING:
    from aikit.api._log import requests
    from aikit.api._marker import endpoint
    from aikit.llm import Reply, achat, chat
    from aikit.prompts import Template, few_shot
    from aikit.registry import runs
    from aikit.runner import Run, run_notebook
    from aikit.settings import Settings, configure, get_settings

# The rest load on first use, so `import aikit` stays cheap in every kernel and worker.
_LAZY = {
    "Reply": "aikit.llm",
    "achat": "aikit.llm",
    "chat": "aikit.llm",
    "Template": "aikit.prompts",
    "few_shot": "aikit.prompts",
    "runs": "aikit.registry",
    "Run": "aikit.runner",
    "run_notebook": "aikit.runner",
    "Settings": "aikit.settings",
    "configure": "aikit.settings",
    "get_settings": "aikit.settings",
    "endpoint": "aikit.api._marker",  # light: no FastAPI until `aikit api` serves
    "requests": "aikit.api._log",
}


# Subpackages reachable as attributes (`aikit.rag.load`) without importing them up front.
_SUBPACKAGES = frozenset({"api", "evals", "rag"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"aikit.{name}")
    raise AttributeError(f"module 'aikit' has no attribute {name!r}")


__all__ = [
    "AikitError",
    "Reply",
    "Run",
    "Settings",
    "Template",
    "abatch",
    "achat",
    "batch",
    "chat",
    "configure",
    "endpoint",
    "estimate",
    "few_shot",
    "get_settings",
    "record",
    "requests",
    "run_notebook",
    "runs",
    "usage",
]
