"""`aikit api NOTEBOOK`: check the arguments, bind the port, then run uvicorn (one process, or
`--workers N` processes that each execute the notebook at start-up).

Every mistake is one line before anything starts: a bad number (`--port 70000`, `--timeout
nan`), an unsafe bind, a port in use (the socket is bound here, before "serving at" is
printed), a notebook that cannot be served (also with `--workers`: a worker that cannot start
stops the server instead of being started again and again).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from aikit.api._app import FAILURE_ENV, create_app
from aikit.api._config import CONFIG_ENV, Config
from aikit.errors import ApiError


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(config: Config, host: str, workers: int, port: int = 8000) -> None:
    """Refuse what would be unsafe or cannot start, in one line each."""
    if not Path(config.notebook).is_file():
        raise ApiError(f"{config.notebook} does not exist; pass a notebook (.ipynb)")
    if config.token_env is None and not is_loopback(host):
        raise ApiError(
            f"refusing to serve on {host} without a token: anyone who can reach it could call"
            " the notebook's functions; pass --token-env NAME (an environment variable holding"
            " the bearer token) or bind to 127.0.0.1"
        )
    if config.token_env is not None and not os.environ.get(config.token_env):
        raise ApiError(
            f"--token-env {config.token_env}: the variable is not set or empty; export"
            f" {config.token_env}=<a long random string> first"
        )
    if not 1 <= port <= 65535:
        raise ApiError(f"--port {port}: a port is 1 to 65535; e.g. --port 8000")
    if workers < 1:
        raise ApiError(f"--workers {workers}: needs at least 1")
    for name in ("concurrency", "queue", "batch_concurrency", "max_batch", "max_body", "readers"):
        value = getattr(config, name)
        if value < (0 if name == "queue" else 1):
            raise ApiError(f"--{name.replace('_', '-')} {value}: must be positive")
    for flag, seconds in (
        ("--timeout", config.timeout_s),
        ("--body-timeout", config.body_timeout_s),
    ):
        if not (math.isfinite(seconds) and seconds > 0):
            raise ApiError(f"{flag} {seconds}: must be a positive number of seconds, e.g. 30")
    from aikit.api._log import log_target
    from aikit.settings import get_settings

    settings = get_settings()
    log_target(settings.home, settings.request_log)  # a bad AIKIT_REQUEST_LOG: one line, now
    if config.score or config.alert:
        from aikit.api._scoring import by_name, parse_alert

        for spec in config.score:
            by_name(spec)  # an unknown metric or a bad rate: one line
        for spec in config.alert:
            parse_alert(spec)  # a metric that no endpoint scores: checked at start-up


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (listening is uvicorn's); a port in use is one line."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise ApiError(f"--host {host}: not an address of this machine ({exc.strerror})") from exc
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ApiError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port, or stop"
            " what uses it"
        ) from exc
    sock.set_inheritable(True)
    return sock


class _NoRespawnNotice(logging.Filter):
    """Drop uvicorn's own line about a worker that failed to start: ours says why."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to start" not in record.getMessage()


def serve(config: Config, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Execute the notebook and serve its endpoints until interrupted."""
    import uvicorn

    config.host, config.port = host, port
    check(config, host, workers, port)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,  # the request log has every request
        "timeout_graceful_shutdown": 5,
    }
    where = f"http://{host}:{port}"
    sock = bind(host, port)
    try:
        if workers == 1:
            app = create_app(config)  # a failing cell is a one-line error before serving
            print(
                f"aikit api: serving {config.notebook} at {where} (docs: {where}/docs)", flush=True
            )
            uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])
            return
        _serve_workers(config, sock, workers, options, where)
    finally:
        sock.close()


def _serve_workers(
    config: Config, sock: socket.socket, workers: int, options: dict[str, Any], where: str
) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    with tempfile.TemporaryDirectory(prefix="aikit-api-") as folder:
        failure = Path(folder) / "failure.txt"
        os.environ[CONFIG_ENV] = config.to_env()
        os.environ[FAILURE_ENV] = str(failure)
        print(
            f"aikit api: serving {config.notebook} at {where} with {workers} workers"
            f" (docs: {where}/docs)",
            flush=True,
        )
        settings = uvicorn.Config(
            "aikit.api._app:app_from_env", factory=True, workers=workers, **options
        )
        quiet = _NoRespawnNotice()
        logging.getLogger("uvicorn.error").addFilter(quiet)
        try:
            Multiprocess(settings, sockets=[sock]).run()
        finally:
            logging.getLogger("uvicorn.error").removeFilter(quiet)
        if failure.exists():
            lines = failure.read_text(encoding="utf-8").splitlines()
            raise ApiError(lines[0] if lines else "a worker could not start")
