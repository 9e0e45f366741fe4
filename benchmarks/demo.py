"""Wall time of the main job: the onboarding playbook (`make demo`'s notebooks) from nothing.

Runs `aikit run playbooks/onboarding.yaml` as `make demo` does, with a fresh `AIKIT_HOME` (an
empty response store, no model server running: the first call starts it) and a temporary runs
folder, then prints each notebook's duration from its run record, the wall time, the ratio
to the target of 4 minutes on a 2-core machine (set-up excluded). Exit code 1 when a run
failed or the target is missed.

With `--burners N` it runs the playbook twice: once as above, then again from nothing while N
CPU-bound processes (a busy loop each) run beside it, and prints both wall times and every
record (`aikit.record`) that differs between the two runs. The main job holds under load when
the loaded run succeeds with the same records (exit code 1 otherwise; the 4-minute target
applies to the quiet run only).

    .venv/bin/python benchmarks/demo.py [--burners 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 240.0
SLOWEST = 12  # cells listed, slowest first


def slowest_cells(runs: Path) -> list[tuple[float, str, str]]:
    """(seconds, notebook, first source line) of the slowest code cells of every run."""
    cells = []
    for path in runs.rglob("*.ipynb"):
        for cell in json.loads(path.read_text()).get("cells", []):
            seconds = (cell.get("metadata", {}).get("papermill") or {}).get("duration")
            if cell.get("cell_type") == "code" and seconds:
                source = "".join(cell.get("source", "")).strip().splitlines() or [""]
                cells.append((float(seconds), path.name, source[0]))
    return sorted(cells, reverse=True)[:SLOWEST]


def burn() -> None:
    """A CPU-bound process: what other work on a busy machine looks like to the playbook."""
    while True:
        pass


def run_playbook() -> tuple[float, list[dict], bool, Path, str]:
    """One onboarding run from nothing: wall time, run records, success, runs folder, stderr."""
    scratch = Path(tempfile.mkdtemp(prefix="aikit-bench-demo-"))
    env = {**os.environ, "AIKIT_HOME": str(scratch / "home")}
    for name in ("AIKIT_CACHE", "AIKIT_PROFILE", "AIKIT_PROVIDER", "AIKIT_MODEL"):
        env.pop(name, None)
    aikit = [sys.executable, "-m", "aikit.cli"]
    started = time.perf_counter()
    done = subprocess.run(
        [*aikit, "run", "playbooks/onboarding.yaml", "--out", str(scratch / "runs")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    subprocess.run([*aikit, "serve", "--stop"], cwd=ROOT, env=env, capture_output=True)
    records = sorted(
        (json.loads(p.read_text()) for p in (scratch / "runs").rglob("run.json")),
        key=lambda r: str(r.get("notebook")),
    )
    ok = done.returncode == 0 and all(r.get("status") == "succeeded" for r in records)
    return wall, records, ok, scratch / "runs", done.stderr


def report(wall: float, records: list[dict], runs: Path) -> None:
    print(f"onboarding playbook from nothing ({os.cpu_count()} cores), set-up excluded")
    for record in records:
        usage = record.get("usage") or {}
        print(
            f"  {Path(str(record.get('notebook'))).name:24} {record.get('status'):10}"
            f" {float(record.get('duration_s') or 0):6.1f} s  {usage.get('calls', 0):4} calls"
        )
    print(f"wall time {wall:.0f} s ({wall / 60:.1f} min); target {TARGET_S:.0f} s")
    print(f"the {SLOWEST} slowest cells (papermill's durations in the runs' notebooks):")
    for seconds, name, first_line in slowest_cells(runs):
        print(f"  {seconds:6.1f} s  {name:24} {first_line[:60]}")
    print(f"target / wall time: {TARGET_S / wall:.2f}x (>= 1.0 meets it)")


def differences(quiet: list[dict], loaded: list[dict]) -> list[str]:
    """Every record that is not the same in both runs, as `notebook: name quiet -> loaded`."""

    def values(records: list[dict]) -> dict[tuple[str, str], object]:
        return {
            (Path(str(r.get("notebook"))).name, name): value
            for r in records
            for name, value in (r.get("records") or {}).items()
        }

    a, b = values(quiet), values(loaded)
    return [
        f"{notebook}: {name} {a.get((notebook, name))!r} -> {b.get((notebook, name))!r}"
        for notebook, name in sorted(a.keys() | b.keys())
        if a.get((notebook, name)) != b.get((notebook, name))
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burners", type=int, default=0, help="CPU-bound processes beside it")
    args = parser.parse_args()
    wall, records, ok, runs, stderr = run_playbook()
    report(wall, records, runs)
    if not ok:
        print(stderr[-2000:], file=sys.stderr)
    if not args.burners:
        return 0 if ok and wall <= TARGET_S else 1
    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.burners)]
    for process in burners:
        process.start()
    try:
        loaded_wall, loaded, loaded_ok, loaded_runs, loaded_stderr = run_playbook()
    finally:
        for process in burners:
            process.kill()
    print(f"\nagain, with {args.burners} CPU-bound processes beside it")
    report(loaded_wall, loaded, loaded_runs)
    if not loaded_ok:
        print(loaded_stderr[-2000:], file=sys.stderr)
    changed = differences(records, loaded)
    print(f"loaded / quiet wall time: {loaded_wall / wall:.2f}x")
    print(f"records that differ under load: {len(changed)}")
    for line in changed:
        print(f"  {line}")
    return 0 if ok and loaded_ok and not changed else 1


if __name__ == "__main__":
    sys.exit(main())
