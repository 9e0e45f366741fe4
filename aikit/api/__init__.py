"""A notebook's functions as a typed REST API: `aikit api NOTEBOOK`.

Mark a function in a notebook with `@aikit.endpoint`; `aikit api` executes the notebook once
per server process (its parameters checked as in `aikit run`) and serves each marked function
with FastAPI + uvicorn: `POST /{name}`, `/{name}/batch`, `/{name}/stream` (SSE), with schemas
from the type hints, `/docs` offline, a bearer token, limits, a request log that
`aikit.requests()` reads (SQLite, or PostgreSQL for many machines: `AIKIT_REQUEST_LOG`), and
live scores (`--score`, `scores()`, `live_scores()`, `plot_live_scores()`).
`serving(NOTEBOOK)` starts `aikit api` on a free port and gives a client (with `stream()` for
the server-sent events). See `playbooks/serving.md`.

Only the marker and the log reader load eagerly; FastAPI and uvicorn load when serving.
"""

from typing import TYPE_CHECKING, Any

from aikit.api._marker import EndpointSpec, endpoint

if TYPE_CHECKING:
    from aikit.api._app import create_app
    from aikit.api._client import ApiClient, Event, serving
    from aikit.api._config import Config
    from aikit.api._log import requests, scores
    from aikit.api._monitor import live_scores, plot_live_scores
    from aikit.api._serve import serve

_LAZY = {
    "ApiClient": "aikit.api._client",
    "Config": "aikit.api._config",
    "Event": "aikit.api._client",
    "create_app": "aikit.api._app",
    "live_scores": "aikit.api._monitor",
    "plot_live_scores": "aikit.api._monitor",
    "requests": "aikit.api._log",
    "scores": "aikit.api._log",
    "serve": "aikit.api._serve",
    "serving": "aikit.api._client",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aikit.api' has no attribute {name!r}")


__all__ = [
    "ApiClient",
    "Config",
    "EndpointSpec",
    "Event",
    "create_app",
    "endpoint",
    "live_scores",
    "plot_live_scores",
    "requests",
    "scores",
    "serve",
    "serving",
]
