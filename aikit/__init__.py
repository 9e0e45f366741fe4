"""aikit: a Jupyter-based team playbook and notebook kit for AI engineers.

The verbs most people need are here, each a function; the modules hold the rest and are
reachable as attributes (`aikit.costs.cost_of`, `aikit.rag.load`). No exported name is also a
module: implementation modules named like a verb are private (`aikit._batch`, `aikit._record`).
"""

import importlib
from typing import TYPE_CHECKING, Any

from aikit.errors import AikitError

if TYPE_CHECKING:
    from aikit._batch import abatch, batch, estimate
    from aikit._record import notebook_dir, record
    from aikit.api._log import requests
    from aikit.api._marker import endpoint
    from aikit.costs import usage
    from aikit.llm import Reply, achat, chat
    from aikit.prompts import Template, few_shot
    from aikit.registry import Run, runs
    from aikit.runner import run_notebook
    from aikit.settings import Settings, configure, get_settings

# Everything loads on first use, so `import aikit` stays cheap in every kernel and worker.
_LAZY = {
    "Reply": "aikit.llm",
    "Run": "aikit.registry",
    "Settings": "aikit.settings",
    "Template": "aikit.prompts",
    "abatch": "aikit._batch",
    "achat": "aikit.llm",
    "batch": "aikit._batch",
    "chat": "aikit.llm",
    "configure": "aikit.settings",
    "endpoint": "aikit.api._marker",  # light: no FastAPI until `aikit api` serves
    "estimate": "aikit._batch",
    "few_shot": "aikit.prompts",
    "get_settings": "aikit.settings",
    "notebook_dir": "aikit._record",
    "record": "aikit._record",
    "requests": "aikit.api._log",
    "run_notebook": "aikit.runner",
    "runs": "aikit.registry",
    "usage": "aikit.costs",
}

# The public modules, reachable as attributes without importing them up front.
MODULES = frozenset(
    {
        "api",
        "cache",
        "cli",
        "costs",
        "errors",
        "evals",
        "guards",
        "llm",
        "local",
        "prompts",
        "provider",
        "rag",
        "registry",
        "runner",
        "settings",
        "widgets",
    }
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in MODULES:
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
    "notebook_dir",
    "record",
    "requests",
    "run_notebook",
    "runs",
    "usage",
]
