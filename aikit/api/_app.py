"""The app of `aikit api`: execute the notebook, then serve its marked functions.

Routes per endpoint `name`: `POST /name` (one call), `POST /name/batch` (a list of inputs,
answered concurrently, in order, one result or error per item), `POST /name/stream`
(server-sent events: `chunk` events with the answer's text as the model produces it, then one
`result` or `error` event). Also `GET /healthz`, `GET /openapi.json` and `GET /docs`.

One path per request: the guard (`_guard.py`, ASGI middleware) checks and admits it, FastAPI
routes it (`_routes.py`) to `Endpoint` (`_calls.py`), which validates it and calls the
function. A
function that raises answers 500 with a JSON error and the request id; the server keeps
serving. No secret (a `secret:NAME` parameter, the bearer token) leaves the process in any
form: answers, errors, the log, stdout and stderr are scrubbed (`aikit._scrub`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from aikit import tracing
from aikit._scrub import Scrubber
from aikit.api import _guarding, _scoring
from aikit.api._calls import Endpoint, Workers
from aikit.api._config import CONFIG_ENV, Config
from aikit.api._guard import ASGIApp, Guard, allowed_hosts
from aikit.api._log import RequestLog, log_target
from aikit.api._notebook import execute, resolve_secrets
from aikit.api._routes import app_for
from aikit.api._schema import build
from aikit.api._traced import Traced
from aikit.errors import AikitError, ApiError

FAILURE_ENV = "AIKIT_API_FAILURE_FILE"  # where a worker that cannot start writes why
STARTUP_FAILURE = 3  # uvicorn's exit code for "failed before serving": it does not respawn


class _ScrubbedStream:
    """A text stream that scrubs every secret from what is written to it."""

    def __init__(self, stream: TextIO, scrubber: Scrubber) -> None:
        self._stream, self._scrubber = stream, scrubber

    def write(self, text: str) -> int:
        return self._stream.write(self._scrubber.text(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def scrub_output(scrubber: Scrubber) -> None:
    """Scrub this process's stdout and stderr (an endpoint's `print`, tracebacks, uvicorn's
    and logging's handlers) from now on."""
    if not scrubber:
        return
    originals = [sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__]
    if not isinstance(sys.stdout, _ScrubbedStream):
        sys.stdout = _ScrubbedStream(sys.stdout, scrubber)
    if not isinstance(sys.stderr, _ScrubbedStream):
        sys.stderr = _ScrubbedStream(sys.stderr, scrubber)
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and any(
                stream is o for o in originals if o is not None
            ):
                handler.setStream(_ScrubbedStream(stream, scrubber))  # type: ignore[arg-type]


def create_app(config: Config) -> ASGIApp:
    """Execute the notebook and build the guarded app (what each server process runs)."""
    from aikit.api._serve import is_loopback
    from aikit.settings import get_settings

    notebook = Path(config.notebook)
    values, secrets = resolve_secrets(config.parameters)
    token = os.environ.get(config.token_env, "") if config.token_env else None
    if token and config.token_env:
        secrets[config.token_env] = token
    scrubber = Scrubber(secrets)
    tracing.keep_out(secrets)  # no span holds them either
    scrub_output(scrubber)
    functions = execute(notebook, values, scrubber=scrubber)
    workers = Workers(config.concurrency + config.batch_concurrency)
    endpoints = {
        name: Endpoint(
            build(name, fn),
            timeout_s=config.timeout_s,
            batch=(config.batch_concurrency, config.max_batch),
            workers=workers,
            scrubber=scrubber,
            guards=_guarding.for_endpoint(fn, config.guards),
            scorers=_scoring.for_endpoint(fn, config.score),
        )
        for name, fn in functions.items()
    }
    alerts = [_scoring.parse_alert(spec) for spec in config.alert]
    scored = {s.name for e in endpoints.values() for s in e.scorers}
    for metric, _ in alerts:
        if metric not in scored:
            raise ApiError(
                f"--alert {metric}<...: no endpoint scores {metric!r}; add --score {metric}"
                f" (scored: {', '.join(sorted(scored)) or 'nothing'})"
            )
    settings = get_settings()
    log = RequestLog(log_target(settings.home, settings.request_log), scrubber)
    scoring = _scoring.LiveScoring(log, alerts) if scored else None

    def shutdown() -> None:
        if scoring is not None:
            scoring.close()
        log.close()
        workers.close()
        tracing.flush()  # the last spans and metrics

    app = app_for(
        f"aikit api: {notebook.stem}",
        f"The marked functions of `{notebook.name}`, served by `aikit api`.",
        list(endpoints.values()),
        secured=token is not None,
        on_shutdown=shutdown,
    )
    guard = Guard(
        app,
        endpoints=endpoints,
        config=config,
        token=token,
        log=log,
        hosts=allowed_hosts(config, is_loopback(config.host)),
        scoring=scoring,
    )
    return Traced(guard, guard.routes)  # a server span per request (aikit/api/_traced.py)


def app_from_env() -> ASGIApp:
    """The uvicorn factory each `--workers` process calls (`CONFIG_ENV` holds the config).

    A notebook that cannot be served fails the same way in every worker: the worker writes
    the one-line reason where the parent reads it and exits with uvicorn's start-up failure
    code, so the parent stops instead of starting it again."""
    try:
        return create_app(Config.from_env())
    except AikitError as exc:
        where = os.environ.get(FAILURE_ENV)
        if where:
            with open(where, "a", encoding="utf-8") as out:
                out.write(f"{exc}\n")
        sys.exit(STARTUP_FAILURE)


__all__ = ["CONFIG_ENV", "Config", "app_from_env", "create_app"]
