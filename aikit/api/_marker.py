"""`@aikit.endpoint`: marks a notebook function as an endpoint of `aikit api`.

The marker only tags the function (`fn.__aikit_endpoint__`) and returns it unchanged, so the
notebook runs exactly as before in JupyterLab, papermill and nbval. This module imports
nothing heavy: every notebook that uses the marker imports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from aikit.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__aikit_endpoint__"
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
RESERVED = frozenset({"healthz", "docs", "redoc", "openapi.json"})


@dataclass(frozen=True)
class EndpointSpec:
    """What the marker says about a function: its route name (`POST /{name}`), guards and
    live scores."""

    name: str
    guards: Any = None  # what `aikit.guards.as_guards` takes; resolved when served
    score: Any = None  # what `aikit api --score` takes, or metrics; resolved when served


@overload
def endpoint(fn: F, /) -> F: ...


@overload
def endpoint(
    *, name: str | None = None, guards: Any = None, score: Any = None
) -> Callable[[F], F]: ...


def endpoint(
    fn: Any = None, /, *, name: str | None = None, guards: Any = None, score: Any = None
) -> Any:
    """Mark a function as an endpoint of `aikit api NOTEBOOK`; it stays a plain function.

    Its parameters' type hints are the request schema, its return type the response schema.
    Use it bare (`@aikit.endpoint`, route `POST /<function name>`) or with a route name
    (`@aikit.endpoint(name="ask")`). `guards` (an `aikit.guards.Guards`, or a list of guards
    and built-in names such as `["pii", "prompt_injection"]`) check each request's text
    fields before the function runs and its answer before it leaves. `score` lists live
    metrics for a sample of the answered requests, scored after the answer has gone out: names
    as `aikit api --score` takes them (`"faithfulness:0.1"`), metric functions, judges
    (`aikit.evals.judge(...)`) or guards, each optionally as a `(metric, rate)` pair.

    Example:
        >>> @endpoint
        ... def double(x: int) -> int:
        ...     return 2 * x
        >>> double(2), double.__aikit_endpoint__.name
        (4, 'double')
    """

    def mark(function: F) -> F:
        route = str(name or getattr(function, "__name__", ""))
        if not _NAME.fullmatch(route) or route in RESERVED:
            raise ApiError(
                f"endpoint name {route!r} cannot be a route; use lowercase letters, digits, _ or -"
                f" (not {', '.join(sorted(RESERVED))}), e.g. @aikit.endpoint(name='ask')"
            )
        setattr(function, ATTRIBUTE, EndpointSpec(route, guards, score))
        return function

    if fn is None:
        return mark
    if not callable(fn):
        raise ApiError(f"@aikit.endpoint marks a function, not {type(fn).__name__} {fn!r:.40}")
    return mark(fn)


def marked(namespace: Mapping[str, Any]) -> dict[str, Callable[..., Any]]:
    """The marked functions in a notebook's namespace, by route name (a repeated name is an
    error: two functions cannot share a route)."""
    found: dict[str, Callable[..., Any]] = {}
    for value in list(namespace.values()):
        spec = getattr(value, ATTRIBUTE, None) if callable(value) else None
        if not isinstance(spec, EndpointSpec):
            continue
        other = found.get(spec.name)
        if other is not None and other is not value:
            raise ApiError(
                f"two functions are marked as endpoint {spec.name!r}; give one another name"
                " with @aikit.endpoint(name=...)"
            )
        found[spec.name] = value
    return dict(sorted(found.items()))
