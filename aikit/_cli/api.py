"""`aikit api NOTEBOOK`: its options, and the command (aikit/api/ does the serving)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aikit.errors import ParameterError


def add_arguments(api: argparse.ArgumentParser) -> None:
    """The options of `aikit api` (after NOTEBOOK and `-p`/`-f`)."""
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    api.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    api.add_argument("--workers", type=int, default=1, help="server processes (default: 1)")
    api.add_argument(
        "--token-env",
        metavar="NAME",
        help="require `Authorization: Bearer $NAME` (needed to bind beyond loopback)",
    )
    api.add_argument("--timeout", type=float, default=60.0, help="seconds per request (504)")
    api.add_argument(
        "--max-body", type=int, default=1_048_576, help="largest request body in bytes (413)"
    )
    api.add_argument(
        "--concurrency", type=int, default=32, help="requests served at once per process"
    )
    api.add_argument(
        "--queue", type=int, default=64, help="requests waiting beyond that (then 503)"
    )
    api.add_argument(
        "--body-timeout", type=float, default=10.0, help="seconds to receive a body (408)"
    )
    api.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="also answer requests addressed to this host name (repeatable; default: the bound"
        " address only)",
    )
    api.add_argument(
        "--allow-origin",
        action="append",
        metavar="URL",
        help="let pages from this origin call the API, e.g. https://app.example (repeatable)",
    )
    api.add_argument(
        "--guard",
        action="append",
        metavar="NAME",
        help="a built-in guard on every endpoint, e.g. pii or prompt_injection (repeatable)",
    )
    api.add_argument(
        "--score",
        action="append",
        metavar="METRIC[:RATE]",
        help="score this share of answered requests after answering, e.g. faithfulness:0.1"
        " (repeatable; RAG metrics, json_valid, or a guard name)",
    )
    api.add_argument(
        "--alert",
        action="append",
        metavar="METRIC<VALUE",
        help="warn when the rolling mean of a --score metric (last 20 scores) falls below VALUE",
    )


def run_api(args: argparse.Namespace, file_values: dict[str, Any]) -> int:
    """Check the notebook's parameters, then serve it until interrupted."""
    from aikit.api import Config, serve
    from aikit.runner import convert
    from aikit.runner.params import cli_values

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise ParameterError(f"{notebook} does not exist; pass a notebook (.ipynb)")
    params = convert(notebook, file_values) | convert(
        notebook, cli_values(args.param), from_cli=True
    )
    settings_for(notebook)  # the notebook's project's `.env`/`aikit.toml`, in every worker
    if args.guard:
        from aikit.guards import builtin

        for name in args.guard:
            builtin(name)  # an unknown guard: one line naming the built-in ones
    config = Config(
        notebook=str(notebook),
        parameters=params,
        token_env=args.token_env,
        max_body=args.max_body,
        timeout_s=args.timeout,
        concurrency=args.concurrency,
        queue=args.queue,
        body_timeout_s=args.body_timeout,
        allow_hosts=list(args.allow_host or []),
        allow_origins=list(args.allow_origin or []),
        guards=list(args.guard or []),
        score=list(args.score or []),
        alert=list(args.alert or []),
    )
    serve(config, host=args.host, port=args.port, workers=args.workers)
    return 0


def settings_for(notebook: Path) -> None:
    """Point this process (and the processes it starts) at `notebook`'s folder and project, so
    settings resolve as they do in the notebook's kernel under `aikit run`."""
    import os

    from aikit.settings import NOTEBOOK_DIR_ENV, PROJECT_ROOT_ENV, project_root, reset_settings

    folder = notebook.resolve().parent
    os.environ[NOTEBOOK_DIR_ENV] = str(folder)
    root = project_root(folder)
    if root is not None:
        os.environ.setdefault(PROJECT_ROOT_ENV, str(root))
    reset_settings()
