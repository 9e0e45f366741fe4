"""Tracing of `aikit api` requests: pure ASGI middleware in front of the guard.

Each request to an endpoint's route (`POST /name`, `/name/batch`, `/name/stream`) gets a server
span `POST /name...` (its parent the client's `traceparent`, if it sent one), current while the
guard and the function run, so the model calls, retrieval and guard verdicts made for it are
its children and events. The span holds the request id (`aikit.request_id`, the guard's
`X-Request-ID`), the endpoint, the status and `http.*` attributes; the response carries the
trace id as `X-Trace-ID`, so a request id leads to its trace and back. Every request (traced or
not) is counted in `http.server.request.duration` when metrics are on. With tracing and metrics
off this adds one check per request.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.trace import SpanKind

from aikit import tracing
from aikit.api._guard import ASGIApp, Message, Receive, Scope, Send


class Traced:
    """A server span and the request-duration metric around each endpoint request."""

    def __init__(self, app: ASGIApp, routes: dict[str, Any]) -> None:
        self.app, self.routes = app, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path not in self.routes:
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers") or []
            if k in (b"traceparent", b"tracestate")
        }
        endpoint, kind = self.routes[path]
        attributes = {
            "http.request.method": method,
            "http.route": path,
            "url.path": path,
            "url.scheme": "http",
            "aikit.endpoint": endpoint.schema.name,
            "aikit.request_kind": kind,
        }
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 0}
        parent = tracing.context_from(headers) if tracing.enabled() else None
        with tracing.span(
            f"{method} {path}", attributes, kind=SpanKind.SERVER, parent=parent
        ) as current:
            trace_id = tracing.trace_id(current)

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    seen["status"] = int(message["status"])
                    found = dict(message.get("headers") or [])
                    seen["request_id"] = found.get(b"x-request-id", b"").decode("latin-1")
                    if trace_id:
                        message["headers"] = [
                            *message.get("headers", []),
                            (b"x-trace-id", trace_id.encode()),
                        ]
                await send(message)

            try:
                await self.app(scope, receive, sending)
            finally:
                status = seen["status"] or 499  # 499: the client went away first
                tracing.annotate(
                    current,
                    {
                        "http.response.status_code": status,
                        "aikit.request_id": seen.get("request_id") or None,
                    },
                )
                if status >= 500:
                    tracing.fail(current, str(status))
                tracing.record_request(method, path, status, time.perf_counter() - started)
