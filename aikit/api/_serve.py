"""`aikit api NOTEBOOK`: check the arguments, then run uvicorn (one process, or `--workers N`
processes that each execute the notebook at start-up)."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

from aikit.api._app import CONFIG_ENV, Config, create_app
from aikit.errors import ApiError


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(config: Config, host: str, workers: int) -> None:
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
    if workers < 1:
        raise ApiError(f"--workers {workers}: needs at least 1")
    for name in ("concurrency", "queue", "batch_concurrency", "max_batch", "max_body"):
        value = getattr(config, name)
        if value < (0 if name == "queue" else 1):
            raise ApiError(f"--{name.replace('_', '-')} {value}: must be positive")
    if config.timeout_s <= 0:
        raise ApiError(f"--timeout {config.timeout_s}: must be positive (seconds)")


def serve(config: Config, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Execute the notebook and serve its endpoints until interrupted."""
    import uvicorn

    check(config, host, workers)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,  # the request log has every request
        "timeout_graceful_shutdown": 5,
    }
    where = f"http://{host}:{port}"
    if workers == 1:
        app = create_app(config)  # a failing cell is a one-line error before binding
        print(f"aikit api: serving {config.notebook} at {where} (docs: {where}/docs)", flush=True)
        uvicorn.run(app, **options)
        return
    os.environ[CONFIG_ENV] = config.to_env()
    print(
        f"aikit api: serving {config.notebook} at {where} with {workers} workers"
        f" (docs: {where}/docs)",
        flush=True,
    )
    sys.stdout.flush()
    uvicorn.run("aikit.api._app:app_from_env", factory=True, workers=workers, **options)
