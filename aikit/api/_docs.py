"""The FastAPI app of `aikit api`: `/healthz`, `/openapi.json`, `/docs` (Swagger UI served from
the package, no CDN), 404s and the lifespan. It documents the endpoints' routes but does not
answer them: the guard (`aikit/api/_guard.py`) does, for every `POST /name...`. The routes it
documents live in a router that is never mounted, so nothing can reach them by mistake.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel

from aikit.api._calls import Endpoint

ERRORS = [
    (400, "more than one Authorization header"),
    (401, "missing or wrong bearer token"),
    (403, "a foreign Origin (cross-site request)"),
    (408, "the body did not arrive in time"),
    (413, "request body too large"),
    (415, "the body is not application/json"),
    (421, "the Host header does not name this server"),
    (500, "the function raised"),
    (503, "busy: try again after Retry-After seconds"),
    (504, "the function did not finish in time"),
]


class ErrorBody(BaseModel):
    """Every error but 422: what went wrong, the HTTP status, the request id (for the log)."""

    error: str
    status: int
    request_id: str


# One server-sent event (what `text/event-stream` carries, event by event).
EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["chunk", "result", "error"]},
        "data": {
            "type": "string",
            "description": "JSON: {text} for a chunk, the response, or an error",
        },
    },
    "required": ["data"],
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def stream_responses(errors: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """A stream route's responses: events on 200, JSON errors (not events) otherwise."""
    out: dict[int | str, dict[str, Any]] = {
        code: {
            "description": e["description"],
            "content": {"application/json": {"schema": _ERROR_REF}},
        }
        for code, e in errors.items()
    }
    out[200] = {
        "description": "server-sent events: chunk events, then one result or error event",
        "content": {"text/event-stream": {"schema": EVENT}},
    }
    return out


def _never_called(body: Any) -> None:  # pragma: no cover - documentation only
    raise AssertionError("documentation only: the guard answers this route")


def documented(request: type[BaseModel]) -> Callable[..., None]:
    """A route handler that only carries its body type for the schema."""

    def handler(body: Any) -> None:
        _never_called(body)

    handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=request)]
    )
    return handler


def docs_app(
    title: str,
    description: str,
    endpoints: list[Endpoint],
    *,
    secured: bool,
    on_shutdown: Callable[[], None],
) -> Any:
    """The FastAPI app: health, schema and docs for `endpoints` (with bearer security)."""
    from fastapi import APIRouter, Depends, FastAPI
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import Response
    from fastapi.security import HTTPBearer
    from fastapi_offline import FastAPIOffline

    class EventStream(Response):
        media_type = "text/event-stream"

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        on_shutdown()

    app: FastAPI = FastAPIOffline(
        title=title, description=description, version="1", lifespan=lifespan
    )

    @app.get("/healthz", tags=["server"])
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "endpoints": [e.schema.name for e in endpoints],
            "worker": os.getpid(),
        }

    router = APIRouter()  # never mounted: the guard answers these
    auth = [Depends(HTTPBearer(auto_error=False))] if secured else []
    errors: dict[int | str, dict[str, Any]] = {
        code: {"description": text, "model": ErrorBody}
        for code, text in ERRORS
        if secured or code != 401
    }
    for endpoint in endpoints:
        schema = endpoint.schema
        summary = (schema.doc.splitlines() or [schema.name])[0]
        common: dict[str, Any] = {"dependencies": auth, "tags": [schema.name]}
        for path, kind, request, response, what in [
            (f"/{schema.name}", "call", schema.request, schema.response, summary),
            (
                f"/{schema.name}/batch",
                "batch",
                endpoint.batch_request,
                endpoint.batch_response,
                f"{schema.name}: many inputs",
            ),
            (
                f"/{schema.name}/stream",
                "stream",
                schema.request,
                None,
                f"{schema.name}: streamed (SSE)",
            ),
        ]:
            extra: dict[str, Any] = {}
            if kind == "stream":
                extra["response_class"] = EventStream
            router.add_api_route(
                path,
                documented(request),
                methods=["POST"],
                response_model=response,
                summary=what,
                description=schema.doc if kind == "call" else None,
                operation_id=f"{schema.name}_{kind}",
                responses=stream_responses(errors) if kind == "stream" else errors,
                **common,
                **extra,
            )
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=[*app.routes, *router.routes],
    )
    app.openapi = lambda: document  # type: ignore[method-assign]
    return app
