"""Make the example run history that `04_monitoring.ipynb` reads by default.

Every run here is a real run of the nightly playbook by the kit's own runner: for each simulated
night this script calls

    aikit run playbooks/eval-nightly.yaml --out <tmp> -f <night.yaml> --force

(`night.yaml` holds `sample_seed: <night>` and `n_shots`, the few-shot variant's worked
examples per kind)

on the configured model (the embedded Gemma 3 270M by default), so each night scores another
random sample of 16 items per variant and slice, and the runner writes every run.json (records,
usage, and the `fail_under` gate with whether the run passed).

One change lands in the history, so that it holds a real regression: from day 11 on, the
few-shot prompt is cut from 3 worked examples per kind to 1 (`n_shots: 1`, as if to save
tokens). Gemma then falls below the gate on the sentiment slice, where it had passed every
night, and spends fewer tokens per run; the parameter is in every run's record, so the
notebook can point at the cause.

What this script changes afterwards, and nothing else: the runs all happened within minutes, so
it moves each night's runs to their simulated night, five nights over two weeks
(days 0, 4, 7, 11 and 14)
(`started`, `ended` and the time stamp at the start of `run_id` and of the run folder are shifted
by the same amount; durations and order stay). It keeps only `run.json` and `usage.jsonl` of
each run (the executed notebooks and HTML reports would add megabytes), so `output` is set to
null. Run it from the repository root:

    .venv/bin/python notebooks/data/monitoring/make_history.py

`--nights 11 14 --task prompting:few_shot` replaces only those nights' runs of that variant
(through a copy of the playbook whose grid has that one task). The committed history was made
so: all five nights by the whole playbook (n_shots left at 03's default, 3), then the few-shot
runs of days 11 and 14 again with n_shots 1, on a later embedded server (the 2026-12-02 one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PLAYBOOK = ROOT / "playbooks" / "eval-nightly.yaml"
FIRST_NIGHT = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # runs start at 02:00 UTC
NIGHTS = (0, 4, 7, 11, 14)  # five nights over two weeks
TRIMMED = 11  # from this night on, the few-shot variant shows 1 example per kind, not 3


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


def playbook_for(task: str | None, folder: Path) -> Path:
    """The nightly playbook, or a copy of it whose grid runs only `task` (same steps, values
    and gate: the runs are those the whole grid makes for that variant)."""
    if task is None:
        return PLAYBOOK
    spec = yaml.safe_load(PLAYBOOK.read_text())
    for step in spec["steps"]:
        step["notebook"] = str(ROOT / step["notebook"])
    spec["grid"]["task"] = [task]
    copy = folder / PLAYBOOK.name
    copy.write_text(yaml.safe_dump(spec, sort_keys=False))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nights", type=int, nargs="+", choices=NIGHTS, help="only these")
    parser.add_argument("--task", help="only this prompt variant, e.g. prompting:few_shot")
    args = parser.parse_args()
    out = HERE / "eval-nightly"
    nights = args.nights or NIGHTS
    if args.nights is None and args.task is None and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    aikit = [sys.executable, "-m", "aikit.cli"]
    for night in nights:
        when = FIRST_NIGHT + timedelta(days=night)
        for old in out.glob("*/run.json"):  # the runs this night's new ones replace
            record = json.loads(old.read_text())
            same_night = datetime.fromisoformat(record["started"]).date() == when.date()
            if same_night and args.task in (None, record["parameters"]["task"]):
                shutil.rmtree(old.parent)
        with tempfile.TemporaryDirectory(prefix="aikit-history-") as tmp:
            values = Path(tmp) / "night.yaml"  # typed values (-p on a playbook passes strings)
            shots = 1 if night >= TRIMMED else 3
            values.write_text(f"sample_seed: {night + 1}\nn_shots: {shots}\n")
            done = subprocess.run(
                [
                    *aikit,
                    "run",
                    str(playbook_for(args.task, Path(tmp))),
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
