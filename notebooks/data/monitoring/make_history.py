"""Make the example run history that `04_monitoring.ipynb` reads by default.

Every run here is a real run of the nightly playbook by the kit's own runner: for each simulated
night this script calls

    aikit run playbooks/eval-nightly.yaml --out <tmp> -f <night.yaml> --force

(`night.yaml` holds `sample_seed: <night>`)

on the configured model (the embedded Gemma 3 270M by default), so each night scores another
random sample of 16 items per variant and slice, and the runner writes every run.json (records,
usage, and the `fail_under` gate with whether the run passed).

What this script changes afterwards, and nothing else: the runs all happened within minutes, so
it moves each night's runs to their simulated night, five nights over two weeks
(days 0, 4, 7, 11 and 14)
(`started`, `ended` and the time stamp at the start of `run_id` and of the run folder are shifted
by the same amount; durations and order stay). It keeps only `run.json` and `usage.jsonl` of
each run (the executed notebooks and HTML reports would add megabytes), so `output` is set to
null. Run it from the repository root:

    .venv/bin/python notebooks/data/monitoring/make_history.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PLAYBOOK = ROOT / "playbooks" / "eval-nightly.yaml"
FIRST_NIGHT = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # runs start at 02:00 UTC
NIGHTS = (0, 4, 7, 11, 14)  # five nights over two weeks


def shift(record: dict[str, object], night: datetime, first: datetime) -> dict[str, object]:
    """The record moved so that `first` (the night's earliest start) becomes `night`."""
    delta = night - first

    def moved(stamp: object) -> str:
        return (datetime.fromisoformat(str(stamp)) + delta).isoformat(timespec="milliseconds")

    run_id = str(record["run_id"])
    real = datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    return record | {
        "run_id": (real + delta).strftime("%Y%m%d-%H%M%S") + run_id[15:],
        "started": moved(record["started"]),
        "ended": moved(record["ended"]),
        "output": None,
    }


def main() -> None:
    out = HERE / "eval-nightly"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    aikit = [sys.executable, "-m", "aikit.cli"]
    for night in NIGHTS:
        with tempfile.TemporaryDirectory(prefix="aikit-history-") as tmp:
            values = Path(tmp) / "night.yaml"  # typed values (-p on a playbook passes strings)
            values.write_text(f"sample_seed: {night + 1}\n")
            done = subprocess.run(
                [
                    *aikit,
                    "run",
                    str(PLAYBOOK),
                    "--out",
                    f"{tmp}/runs",
                    "-f",
                    str(values),
                    "--force",
                ],
                cwd=ROOT,
                env=os.environ.copy(),
            )
            if done.returncode not in (0, 1):  # 1: a run fell below its gate, as it may
                raise SystemExit(f"aikit run failed with exit code {done.returncode}")
            runs = [json.loads(p.read_text()) for p in Path(tmp, "runs").rglob("run.json")]
            first = min(datetime.fromisoformat(str(r["started"])) for r in runs)
            when = FIRST_NIGHT + timedelta(days=night)
            for run_json in Path(tmp, "runs").rglob("run.json"):
                record = shift(json.loads(run_json.read_text()), when, first)
                target = out / str(record["run_id"])
                target.mkdir()
                (target / "run.json").write_text(json.dumps(record, indent=2) + "\n")
                usage = run_json.parent / "usage.jsonl"
                if usage.exists():
                    shutil.copy(usage, target / "usage.jsonl")
        print(f"night {when:%Y-%m-%d}: {len(runs)} runs")


if __name__ == "__main__":
    main()
