"""`aikit ...`: a thin command line. `AikitError` becomes one line on stderr and exit code 2,
here and nowhere else; a check that fails (`doctor`) exits 1."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from aikit._scrub import redact_url
from aikit.errors import AikitError


def _doctor(_: argparse.Namespace) -> int:
    import openai

    from aikit import local
    from aikit.settings import get_settings

    settings = get_settings()
    print(f"aikit      {version('aikit')}")
    print(f"provider   {settings.provider}")
    print(f"model      {settings.model}")
    problem = None
    if settings.provider == "local":
        try:
            base_url = local.ensure_server(settings)
            info = local.server_info(settings) or {}
            print(f"base_url   {base_url} (embedded model, pid {info.get('pid', '?')})")
        except AikitError as exc:
            base_url, problem = "", str(exc)
            print("base_url   (embedded model, not running)")
        api_key = "aikit-local"
    else:
        base_url, api_key = settings.base_url or "", settings.api_key or ""
        print(f"base_url   {redact_url(base_url)}")  # never a credential or query string
        print(f"api_key    {'set' if api_key else 'NOT SET (OPENAI_API_KEY)'}")
    if problem is None:
        started = time.perf_counter()
        client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "unset", max_retries=0, timeout=10
        )
        try:
            models = [m.id for m in client.models.list()]
            took = time.perf_counter() - started
            listed = ", ".join(models[:5]) or "none listed"
            print(f"answers    yes, in {took:.2f} s (models: {listed})")
        except openai.APIStatusError as exc:
            problem = f"{redact_url(base_url)} answered HTTP {exc.status_code} to GET /models"
        except openai.OpenAIError as exc:
            problem = f"{redact_url(base_url)} does not answer ({exc.__cause__ or exc})"
        finally:
            client.close()
    if problem is not None:
        print("answers    no")
    print(f"cache      {settings.cache}  {settings.cache_path}")
    print(f"kernel     {_kernel()}")
    if problem is not None:
        print(
            f"aikit: error: {problem}; check AIKIT_PROVIDER / OPENAI_BASE_URL / OPENAI_API_KEY",
            file=sys.stderr,
        )
        return 1
    return 0


def _kernel() -> str:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return "jupyter_client not installed"
    manager = KernelSpecManager()
    for name in ("aikit", "python3"):
        try:
            spec = manager.get_kernel_spec(name)
        except NoSuchKernel:
            continue
        python = spec.argv[0]
        if python in ("python", "python3"):  # ipykernel's own spec: started with this Python
            python = sys.executable
        return f"{name} ({spec.display_name}) -> {python}"
    return "no python3 kernel; install one with `python -m ipykernel install --user`"


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
        print(f"{info['base_url']} (pid {info['pid']})" if info else "no server running")
        return 0 if info else 1
    base_url = local.ensure_server(settings)
    info = local.server_info(settings) or {}
    print(
        f"serving {info.get('model')} at {base_url} (pid {info.get('pid')});"
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
            raise AikitError(f"`aikit cache {args.action}` needs a FILE; e.g. cassette.jsonl")
        if args.action == "export":
            print(f"exported {store.export(args.file)} entries to {args.file}")
        else:
            print(f"imported {store.import_(args.file)} entries from {args.file}")
    return 0


def _store_files(path: Any) -> list[Any]:
    from pathlib import Path

    return [Path(path), Path(f"{path}-wal"), Path(f"{path}-shm")]


def _params(args: argparse.Namespace) -> int:
    from aikit.runner import describe

    print(describe(args.notebook))
    return 0


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from aikit.runner import convert, describe_plan, run_notebook, run_playbook, summary

    target = Path(args.target)
    cli_values = dict(args.param or [])
    from aikit.evals.gate import parse_thresholds

    thresholds = parse_thresholds(args.fail_under or [])
    file_values: dict[str, Any] = {}
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # robust (issue 15): checked before anything runs
        raise AikitError(f"--out {args.out} is a file; pass a folder for the runs")
    if args.file:
        try:
            loaded = yaml.safe_load(Path(args.file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise AikitError(f"cannot read parameters file {args.file}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise AikitError(
                f"parameters file {args.file} is not UTF-8 text (byte {exc.start}); save it as"
                " UTF-8 YAML"
            ) from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise AikitError(
                f"parameters file {args.file}{where} is not valid YAML ({problem})"
            ) from exc
        if not isinstance(loaded, dict):
            raise AikitError(f"{args.file} must be a mapping of parameter names to values")
        file_values = loaded
    if target.suffix in (".yaml", ".yml"):
        overrides = file_values | cli_values
        if args.dry_run:
            print(
                describe_plan(
                    target,
                    out=args.out,
                    overrides=overrides,
                    force=args.force,
                    workers=args.workers,
                )
            )
            return 0
        runs = run_playbook(
            target,
            out=args.out,
            workers=args.workers,
            executor=args.executor,
            scheduler=args.scheduler,
            force=args.force,
            overrides=overrides,
        )
        table = summary(runs)
        folder = Path(args.out) / runs[0].name if runs else Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / "summary.csv", index=False)
        with _wide_pandas():
            print(table.drop(columns=["error"]).to_string(index=False))
        failed = [r for r in runs if not r.ok]
        for run in failed:
            print(run.error, file=sys.stderr)
        print(f"runs: {folder}/  summary: {folder / 'summary.csv'}")
        from aikit.runner.playbook import load_playbook

        gate = load_playbook(target)[0].fail_under | thresholds
        return 1 if failed else _gate([r.records for r in runs], gate)
    if args.workers or args.executor != "local" or args.scheduler or args.dry_run or args.force:
        raise AikitError("--workers/--executor/--scheduler/--dry-run/--force are for playbooks")
    if not target.is_file():
        raise AikitError(f"{target} does not exist; pass a notebook (.ipynb) or playbook (.yaml)")
    params = convert(target, file_values) | convert(target, cli_values, from_cli=True)
    run = run_notebook(target, params, out=args.out)
    scrub = _secret_scrubber(params).text  # the record is scrubbed; this is a second belt
    print(f"executed notebook: {run.output}")
    for key, value in run.records.items():
        print(scrub(f"  {key} = {value!r:.200}"))
    if not run.ok:
        print(scrub(run.error or ""), file=sys.stderr)
        return 1
    return _gate([run.records], thresholds)


def _secret_scrubber(params: dict[str, Any]) -> Any:
    import os

    from aikit._scrub import Scrubber
    from aikit.runner.params import SECRET_PREFIX, is_secret_ref

    names = [str(v)[len(SECRET_PREFIX) :] for v in params.values() if is_secret_ref(v)]
    return Scrubber({name: os.environ.get(name, "") for name in names})


def _gate(records: list[dict[str, Any]], thresholds: dict[str, float]) -> int:
    """Exit code 1 and one line per broken `fail_under` threshold, else 0."""
    from aikit.evals.gate import gate_failures

    lines = gate_failures(records, thresholds)
    for line in lines:
        print(f"aikit: {line}", file=sys.stderr)
    return 1 if lines else 0


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
        print(table.drop(columns=["error"]).to_string(index=False))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from aikit.registry import compare

    table = compare(args.run_a, args.run_b, args.out)
    a, b = table.attrs["runs"]
    print(f"a = {a}\nb = {b}")
    with _wide_pandas():
        print(table.to_string(index=False))
    return 0


def _record(args: argparse.Namespace) -> int:
    from aikit.runner import record_notebook

    for notebook in args.notebooks:
        cassette = record_notebook(notebook)
        print(f"recorded {notebook} (cassette {cassette})")
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
    run.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="a parameter value (YAML rules for lists, dicts, bools)",
    )
    run.add_argument("-f", "--file", help="a YAML file of parameter values")
    run.add_argument("--out", default="runs", help="where runs are written (default: runs)")
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
    runs.add_argument("--out", default="runs")
    runs.set_defaults(func=_runs)
    compare = commands.add_parser("compare", help="two runs' values side by side")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--out", default="runs")
    compare.set_defaults(func=_compare)
    record = commands.add_parser(
        "record", help="re-run notebooks on the model, rewrite their cassettes and outputs"
    )
    record.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    record.set_defaults(func=_record)
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
