"""The FastAPI app of `aikit api`: the endpoints' routes, `/healthz`, `/openapi.json`, `/docs`
(Swagger UI served from the package, no CDN), 404s and the lifespan.

FastAPI routes every request and publishes the schema from each route's declaration (the
body type, the response type, the errors). An endpoint's route is an `EndpointRoute`: its
handler is `Endpoint`'s (`aikit/api/_calls.py`), which validates the body the guard has read
(strict JSON, one 422 shape on every route) instead of FastAPI's validation (lax, and a 400
of its own for a body that is not JSON). The guard (`aikit/api/_guard.py`) runs in front as
pure ASGI middleware and hands each request's record and body over in the ASGI scope.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from aikit.api import _guarding
from aikit.api._calls import JSON, Endpoint, RequestInfo

INFO_KEY, BODY_KEY = "aikit.request", "aikit.body"  # what the guard puts in the ASGI scope
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
# One server-sent event (what `text/event-stream` carries, event by event).
EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["chunk", "result", "error"]},
        "data": {"type": "string", "description": "JSON: {text} of a chunk, the result, an error"},
    },
    "required": ["data"],
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


class ErrorBody(BaseModel):
    """Every error but 422: what went wrong, the HTTP status, the request id (for the log)."""

    error: str
    status: int
    request_id: str


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


def declared(request: type[BaseModel]) -> Callable[..., None]:
    """The route's declared endpoint: its signature is the body type for the schema; the
    route's own handler answers instead."""

    def body_of(body: Any) -> None:  # pragma: no cover - EndpointRoute answers
        raise AssertionError("EndpointRoute answers this route")

    body_of.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=request)]
    )
    return body_of


def _handler(endpoint: Endpoint, kind: str) -> Callable[[Any], Awaitable[Any]]:
    from fastapi.responses import Response, StreamingResponse

    async def answer(request: Any) -> Any:
        info: RequestInfo = request.scope[INFO_KEY]
        raw: bytes = request.scope[BODY_KEY]
        if kind != "stream":
            handle = endpoint.batch if kind == "batch" else endpoint.call
            status, payload = await handle(raw, info)
            return Response(payload, status, media_type=JSON)
        body = endpoint.parse(endpoint.schema.request, raw, info)
        if isinstance(body, tuple):
            return Response(body[1], body[0], media_type=JSON)
        info.status = 200
        return StreamingResponse(
            _guarding.cut(endpoint.stream(body, info), endpoint.guards, info),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return answer


def app_for(
    title: str,
    description: str,
    endpoints: list[Endpoint],
    *,
    secured: bool,
    on_shutdown: Callable[[], None],
) -> Any:
    """The FastAPI app serving `endpoints` (documented with bearer security when `secured`)."""
    from fastapi import Depends, FastAPI
    from fastapi.responses import Response
    from fastapi.routing import APIRoute
    from fastapi.security import HTTPBearer
    from fastapi_offline import FastAPIOffline

    class EndpointRoute(APIRoute):
        """A route FastAPI matches and documents, answered by `Endpoint`."""

        def __init__(self, *args: Any, answer: Callable[[Any], Awaitable[Any]], **kw: Any):
            self.answer = answer
            super().__init__(*args, **kw)

        def get_route_handler(self) -> Any:  # our handler, not FastAPI's validation
            return self.answer

    class EventStream(Response):
        media_type = "text/event-stream"

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        on_shutdown()

    # aikit's own server span and metric stand for each request (aikit/api/_traced.py): a
    # FastAPI with native telemetry would add a second span, and logs that hold unscrubbed
    # exception messages; an older FastAPI keeps the unknown keyword in `app.extra`.
    off = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    app: FastAPI = FastAPIOffline(
        title=title, description=description, version="1", lifespan=lifespan, telemetry=off
    )

    @app.get("/healthz", tags=["server"])
    async def healthz() -> dict[str, Any]:
        names = [e.schema.name for e in endpoints]
        return {"status": "ok", "endpoints": names, "worker": os.getpid()}

    auth = [Depends(HTTPBearer(auto_error=False))] if secured else []
    errors: dict[int | str, dict[str, Any]] = {
        code: {"description": text, "model": ErrorBody}
        for code, text in ERRORS
        if secured or code != 401
    }
    for endpoint in endpoints:
        schema = endpoint.schema
        summary = (schema.doc.splitlines() or [schema.name])[0]
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
            app.router.routes.append(
                EndpointRoute(
                    path,
                    declared(request),
                    answer=_handler(endpoint, kind),
                    methods=["POST"],
                    response_model=response,
                    summary=what,
                    description=schema.doc if kind == "call" else None,
                    operation_id=f"{schema.name}_{kind}",
                    responses=stream_responses(errors) if kind == "stream" else errors,
                    dependencies=auth,
                    tags=[schema.name],
                    **extra,
                )
            )
    return app
