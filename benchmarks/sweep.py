"""An 8-run grid of a small notebook: `aikit run --workers 2` versus the same 8 runs through the
plain papermill CLI one after another, and `aikit run --workers 1` for aikit's own overhead;
then the same grid through a two-worker Dask cluster (scheduler and workers as separate
processes, each worker in its own folder, see tests/cluster.py) writing to an S3 server on
127.0.0.1 (moto), against `--workers 2` on the local executor writing to disk.

Run: `.venv/bin/python benchmarks/sweep.py` (or `make bench`); `--cluster-only` runs only the
cluster row. Prints the figures and ratios.
The notebook waits 1.5 s per run, standing in for model calls (I/O, not CPU), plus a little
compute; kernel start-up (~1-3 s of CPU) is the rest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cluster import DaskCluster, S3Server  # the test suite's miniature cluster

RUNS = 8
BIN = Path(sys.executable).parent


def make_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("x: int = 0  # grid value", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import time\nimport aikit\n"
            "time.sleep(1.5)  # stands in for waiting on a model\n"
            "aikit.record('total', sum(i * x for i in range(200_000)))"
        ),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "small.ipynb"
    nbformat.write(nb, path)
    return path


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, cwd=cwd, check=True, capture_output=True, env={**os.environ, **(env or {})}
    )
    return time.perf_counter() - started


def cluster_row(folder: Path, book: Path, rounds: int) -> tuple[list[float], list[float]]:
    """The grid through a two-worker cluster writing to S3 (moto on 127.0.0.1), interleaved
    with `--workers 2` on the local executor writing to disk; seconds per round of each.
    The cluster is started once (its start-up is not timed, as a real one runs already); each
    round writes to a new prefix, so it uploads the notebook again and lists an empty folder."""
    s3 = S3Server(folder / "moto.log").start()
    cluster = DaskCluster(folder / "cluster", workers=2, env=s3.env)
    local: list[float] = []
    remote: list[float] = []
    try:
        bucket = s3.bucket("bench")
        cluster.start()
        aikit = [str(BIN / "aikit"), "run", str(book), "--force"]
        for n in range(rounds):
            local.append(timed([*aikit, "--workers", "2", "--out", f"runs-{n}"], folder))
            dask = ["--executor", "dask", "--scheduler", cluster.address]
            remote.append(timed([*aikit, *dask, "--out", f"{bucket}/runs-{n}"], folder, s3.env))
    finally:
        cluster.stop()
        s3.stop()
    return local, remote


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the cluster row")
    parser.add_argument("--cluster-only", action="store_true", help="only the cluster row")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aikit-bench-") as tmp:
        folder = Path(tmp)
        notebook = make_notebook(folder)
        book = folder / "sweep.yaml"
        grid = ", ".join(str(i) for i in range(RUNS))
        book.write_text(f"name: sweep\nsteps:\n  - notebook: small.ipynb\ngrid:\n  x: [{grid}]\n")
        subprocess.run(
            [str(BIN / "aikit"), "params", str(notebook)], check=True, capture_output=True
        )
        if not args.cluster_only:
            single_machine(folder, notebook, book)
        local, remote = cluster_row(folder, book, args.rounds)
    print(f"the same {RUNS} runs, 2 workers each, interleaved, best of {args.rounds} rounds:")
    print(f"  local executor, runs to disk        : {min(local):6.1f} s  ({_all(local)})")
    print(f"  2-worker Dask cluster, runs to S3    : {min(remote):6.1f} s  ({_all(remote)})")
    print(
        "cluster + object storage over local executor + disk:"
        f" {(min(remote) - min(local)) / min(local):+.1%} (target <= 15%)"
    )


def _all(times: list[float]) -> str:
    return "rounds: " + ", ".join(f"{t:.1f}" for t in times)


def single_machine(folder: Path, notebook: Path, book: Path) -> None:
    papermill = 0.0
    for i in range(RUNS):
        papermill += timed(
            [
                str(BIN / "papermill"),
                "--log-level",
                "WARNING",
                str(notebook),
                str(folder / f"out-{i}.ipynb"),
                "-p",
                "x",
                str(i),
            ],
            folder,
        )
    serial = timed([str(BIN / "aikit"), "run", str(book), "--workers", "1", "--force"], folder)
    parallel = timed([str(BIN / "aikit"), "run", str(book), "--workers", "2", "--force"], folder)
    print(f"{RUNS} runs of a small notebook (1.5 s wait + a little compute each), 2 cores")
    print(
        f"  papermill CLI, one after another : {papermill:6.1f} s  ({papermill / RUNS:.2f} s/run)"
    )
    print(f"  aikit run --workers 1            : {serial:6.1f} s  ({serial / RUNS:.2f} s/run)")
    print(f"  aikit run --workers 2            : {parallel:6.1f} s  ({parallel / RUNS:.2f} s/run)")
    print(
        f"speedup, aikit --workers 2 over sequential papermill: {papermill / parallel:.2f}x"
        " (target >= 1.6)"
    )
    print(
        f"aikit per-run overhead over bare papermill (--workers 1): "
        f"{(serial - papermill) / papermill:+.1%} (target <= 10%)"
    )


if __name__ == "__main__":
    main()
