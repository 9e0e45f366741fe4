"""`aikit ...`: a thin command line. `AikitError` becomes one line on stderr and exit code 2,
here and nowhere else; a check that fails (`doctor`) exits 1."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from aikit._cli.api import add_arguments as add_api_arguments
from aikit.errors import AikitError, ParameterError


def _doctor(_: argparse.Namespace) -> int:
    from aikit._cli.doctor import doctor

    report = doctor()
    print(report.text())
    if report.problem is not None:
        print(
            f"aikit: error: {report.problem}; check AIKIT_PROVIDER / OPENAI_BASE_URL /"
            " OPENAI_API_KEY",
            file=sys.stderr,
        )
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    from aikit import local
    from aikit.settings import get_settings

    settings = get_settings()
    if args.stop:
        info = local.stop_server(settings)
        print(
            f"stopped the embedded model server (pid {info['pid']})"
            if info
            else "no server running"
        )
        return 0
    if args.status:
        info = local.server_info(settings)
        if info is None:
            print("no server running")
            return 1
        status = local.idle_status(info) or {}
        limit = status.get("idle_limit_s")
        stops = f"; it stops after {limit:g} s idle" if limit else "; it never stops by itself"
        idle = f", idle {status['idle_s']:g} s{stops}" if "idle_s" in status else ""
        print(f"{info['base_url']} (pid {info['pid']}{idle})")
        print(f"models: {', '.join(info.get('models') or [str(info.get('model'))])}")
        if "threads" in status:
            print(
                f"llama.cpp threads: {status['threads']} (other processes' runnable threads:"
                f" {status['others_running']:g}, smoothed)"
            )
        return 0
    base_url = local.ensure_server(settings)
    info = local.server_info(settings) or {}
    print(
        f"serving {', '.join(info.get('models') or [str(info.get('model'))])} at {base_url}"
        f" (pid {info.get('pid')});"
        " stop it with `aikit serve --stop`"
    )
    return 0


def _cache(args: argparse.Namespace) -> int:
    from aikit.cache import store_at
    from aikit.settings import get_settings

    path = get_settings().cache_path
    if args.force and args.action != "clear":
        raise AikitError("--force is for `aikit cache clear` (it deletes a corrupt store file)")
    if args.action == "clear" and args.force:  # a corrupt file cannot be opened to be cleared
        gone = [p for p in _store_files(path) if p.exists()]
        for file in gone:
            file.unlink()
        print(f"deleted {path}" if gone else f"no store at {path}")
        return 0
    store = store_at(path)
    if args.action == "stats":
        stats: dict[str, Any] = store.stats()
        print(f"path     {stats['path']}")
        print(f"entries  {stats['entries']}")
        print(f"size     {stats['bytes'] / 1e6:.2f} MB")
        for model, count in stats["models"].items():
            print(f"  {model}: {count}")
    elif args.action == "clear":
        print(f"cleared {store.clear()} entries from {store.path}")
    elif args.action in ("export", "import"):
        if not args.file:
            raise ParameterError(f"`aikit cache {args.action}` needs a FILE; e.g. cassette.jsonl")
        if args.action == "export":
            print(f"exported {store.export(args.file)} entries to {args.file}")
        else:
            print(f"imported {store.import_(args.file)} entries from {args.file}")
    return 0


def _store_files(path: Any) -> list[Any]:
    from pathlib import Path

    return [Path(path), Path(f"{path}-wal"), Path(f"{path}-shm")]


def _params(args: argparse.Namespace) -> int:
    from aikit.runner import describe_parameters

    print(describe_parameters(args.notebook))
    return 0


def _param_file(path: str | None) -> dict[str, Any]:
    """The values of `-f FILE.yaml` (empty without one)."""
    from aikit._userfile import read_yaml

    if not path:
        return {}
    loaded = read_yaml(path, what="parameters file", error=ParameterError)
    if not isinstance(loaded, dict):
        raise ParameterError(f"{path} must be a mapping of parameter names to values")
    return loaded


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aikit import _storage as storage
    from aikit.runner.gate import parse_thresholds
    from aikit.runner.params import cli_values as typed_values

    target = Path(args.target)
    cli_values = typed_values(args.param)  # a name given twice is an error
    thresholds = parse_thresholds(args.fail_under or [])
    if not storage.is_url(args.out) and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ParameterError(f"--out {args.out} is a file; pass a folder for the runs")
    file_values = _param_file(args.file)
    if target.suffix in (".yaml", ".yml"):
        return _run_playbook(args, target, file_values | cli_values, thresholds)
    if args.workers or args.executor != "local" or args.scheduler or args.dry_run or args.force:
        raise ParameterError("--workers/--executor/--scheduler/--dry-run/--force are for playbooks")
    if not target.is_file():
        raise ParameterError(
            f"{target} does not exist; pass a notebook (.ipynb) or playbook (.yaml)"
        )
    return _run_one(args, target, file_values, cli_values, thresholds)


def _run_playbook(
    args: argparse.Namespace, target: Any, overrides: dict[str, Any], thresholds: Any
) -> int:
    from aikit import _storage as storage
    from aikit.runner import describe_plan, run_playbook
    from aikit.runner.progress import summary_tables

    if args.dry_run:
        print(
            describe_plan(
                target, out=args.out, overrides=overrides, force=args.force, workers=args.workers
            )
        )
        return 0
    result = run_playbook(
        target,
        out=args.out,
        workers=args.workers,
        executor=args.executor,
        scheduler=args.scheduler,
        force=args.force,
        overrides=overrides,
        fail_under=thresholds,
        progress=sys.stdout,
    )
    with _wide_pandas():
        for notebook, frame in summary_tables(result.table()):
            print(f"\n{notebook}\n{frame.to_string(index=False, na_rep='')}")
    for run in result.failed:
        print(run.error, file=sys.stderr)
    for line in result.gate_failures:
        print(f"aikit: {line}", file=sys.stderr)
    print(
        f"\nruns: {storage.join(args.out, result.name)}/  summary: {result.summary_html}"
        f" and {result.summary_csv}"
    )
    return 0 if result.ok else 1


def _run_one(
    args: argparse.Namespace,
    target: Any,
    file_values: dict[str, Any],
    cli_values: dict[str, Any],
    thresholds: Any,
) -> int:
    from aikit.runner import convert, run_notebook

    params = convert(target, file_values) | convert(target, cli_values, from_cli=True)
    run = run_notebook(target, params, out=args.out, fail_under=thresholds, progress=sys.stdout)
    scrub = _secret_scrubber(params).text  # the record is scrubbed; this is a second belt
    print(f"executed notebook: {run.output}")
    for key, value in run.records.items():
        print(scrub(f"  {key} = {value!r:.200}"))
    if not run.ok:
        print(scrub(run.error or ""), file=sys.stderr)
        return 1
    for line in run.gate_failures:  # decided by run_notebook (aikit.runner.gate)
        print(f"aikit: {line}", file=sys.stderr)
    return 1 if run.gate_failures else 0


def _secret_scrubber(params: dict[str, Any]) -> Any:
    from aikit._scrub import Scrubber, secret_values

    return Scrubber(secret_values(params))


def _api(args: argparse.Namespace) -> int:
    # `aikit api`: the notebook's marked functions as a REST API (aikit/api/).
    from aikit._cli.api import run_api

    return run_api(args, _param_file(args.file))


def _wide_pandas() -> Any:
    import pandas as pd

    return pd.option_context(
        "display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60
    )


def _runs(args: argparse.Namespace) -> int:
    from aikit.registry import runs

    table = runs(args.out, args.name)
    if table.empty:
        print(f"no runs under {args.out}/")
        return 0
    with _wide_pandas():
        shown = table.drop(columns=["error"]).dropna(axis="columns", how="all")
        print(shown.to_string(index=False, na_rep=""))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from aikit.registry import compare_runs

    table = compare_runs(args.run_a, args.run_b, args.out)
    a, b = table.attrs["runs"]
    print(f"a = {a}\nb = {b}")
    with _wide_pandas():
        print(table.to_string(index=False))
    return 0


def _rerecord(args: argparse.Namespace) -> int:
    from aikit.runner import rerecord
    from aikit.runner.progress import Progress

    progress = Progress(2 * len(args.notebooks))  # two passes each: record, then replay
    for notebook in args.notebooks:
        cassette = rerecord(notebook, progress)
        print(f"re-recorded {notebook} (cassette {cassette})")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line like every other (`aikit: error: ...`, exit 2)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"aikit: error: {message}; see `{self.prog} --help`\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number such as 2")
    return value


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    print(f"aikit: warning: {message}", file=sys.stderr)


def _parameter_arguments(parser: argparse.ArgumentParser) -> None:
    """`-p NAME VALUE` and `-f FILE`, the same for every command that runs a notebook."""
    parser.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="a parameter value (YAML rules for lists, dicts, bools; secret:NAME reads the"
        " environment)",
    )
    parser.add_argument("-f", "--file", help="a YAML file of parameter values")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aikit", description="aikit: the AI team notebook kit")
    parser.add_argument("--version", action="version", version=f"aikit {version('aikit')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    doctor = commands.add_parser("doctor", help="check settings, the endpoint, cache and kernel")
    doctor.set_defaults(func=_doctor)
    serve = commands.add_parser("serve", help="start (or find) the embedded model server")
    serve.add_argument("--stop", action="store_true", help="stop the running server")
    serve.add_argument("--status", action="store_true", help="print the running server, if any")
    serve.set_defaults(func=_serve)
    cache = commands.add_parser("cache", help="the response store: stats, clear, export, import")
    cache.add_argument("action", choices=["stats", "clear", "export", "import"])
    cache.add_argument("file", nargs="?", help="JSONL cassette for export/import")
    cache.add_argument(
        "--force", action="store_true", help="clear: delete the store file, even a corrupt one"
    )
    cache.set_defaults(func=_cache)
    params = commands.add_parser("params", help="list a notebook's parameters")
    params.add_argument("notebook")
    params.set_defaults(func=_params)
    run = commands.add_parser("run", help="run a notebook or a playbook (.yaml), recorded")
    run.add_argument("target", metavar="NOTEBOOK_OR_PLAYBOOK")
    _parameter_arguments(run)
    run.add_argument(
        "--out", default="runs", help="where runs are written: a folder or a URL (default: runs)"
    )
    run.add_argument("--workers", type=_positive_int, help="parallel runs (playbooks)")
    run.add_argument("--executor", choices=["local", "dask"], default="local")
    run.add_argument("--scheduler", help="address of a Dask scheduler, tcp://HOST:PORT")
    run.add_argument("--dry-run", action="store_true", help="print the runs, run nothing")
    run.add_argument("--force", action="store_true", help="re-run runs that already succeeded")
    run.add_argument(
        "--fail-under",
        action="append",
        metavar="METRIC=VALUE",
        help="exit 1 if a run records METRIC below VALUE (repeatable; adds to the playbook's)",
    )
    run.set_defaults(func=_run)
    runs = commands.add_parser("runs", help="list recorded runs")
    runs.add_argument("name", nargs="?", help="only runs of this notebook or playbook")
    runs.add_argument("--out", default="runs", help="the runs folder or URL (s3://...)")
    runs.set_defaults(func=_runs)
    compare = commands.add_parser("compare", help="two runs' values side by side")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--out", default="runs", help="the runs folder or URL (s3://...)")
    compare.set_defaults(func=_compare)
    api = commands.add_parser(
        "api", help="serve a notebook's @aikit.endpoint functions as a REST API"
    )
    api.add_argument("notebook", metavar="NOTEBOOK")
    _parameter_arguments(api)
    add_api_arguments(api)
    api.set_defaults(func=_api)
    rerecord = commands.add_parser(
        "rerecord", help="re-run notebooks on the model, rewrite their cassettes and outputs"
    )
    rerecord.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    rerecord.set_defaults(func=_rerecord)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aikit` command."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning  # e.g. a skipped run.json: one line, no source
    try:
        code: int = args.func(args)
    except AikitError as exc:
        print(f"aikit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aikit: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
