"""The quality gate: `fail_under` thresholds checked against the values runs recorded, and
kept in each run's record (`run.json` field `gate`: `fail_under`, `passed`, `failures`).

`apply_gate` is where a gate is decided, for `run_notebook(fail_under=...)` and
`run_playbook` alike (the CLI only prints what it returns)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aikit.errors import EvalError
from aikit.registry import Run, write_run


def parse_thresholds(pairs: Sequence[str]) -> dict[str, float]:
    """`["accuracy=0.8", ...]` (the CLI's `--fail-under`) -> {"accuracy": 0.8}."""
    out: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
            if not math.isfinite(out[name.strip()]):
                raise EvalError(
                    f"--fail-under {pair!r}: the threshold is not a finite number; write e.g."
                    f" --fail-under {name.strip()}=0.8"
                )
        except ValueError:
            raise EvalError(
                f"--fail-under {pair!r} is not METRIC=VALUE; write e.g. --fail-under accuracy=0.8"
            ) from None
    return out


def gate_failures(
    records: Iterable[Mapping[str, Any]], thresholds: Mapping[str, float]
) -> list[str]:
    """One line per threshold broken: a recorded metric below it, or never recorded."""
    runs = list(records)
    lines = []
    for metric, threshold in thresholds.items():
        values = [r[metric] for r in runs if metric in r]
        if not values:
            lines.append(
                f"fail_under: {metric} was not recorded by any run (threshold {threshold:g});"
                f" record it with aikit.record({metric!r}, value)"
            )
            continue
        for value in values:
            number = value if isinstance(value, int | float) else None
            if number is None or isinstance(value, bool) or math.isnan(float(number)):
                lines.append(
                    f"fail_under: {metric} = {value!r} is not a number (threshold {threshold:g})"
                )
            elif number < threshold:
                lines.append(f"fail_under: {metric} = {number:g} is below {threshold:g}")
    return lines


def run_gate(run: Run, thresholds: Mapping[str, float]) -> dict[str, Any]:
    """The gate as one run keeps it: the thresholds of the metrics this run recorded (all of
    them if the run failed), whether it passed, and the lines of what broke."""
    records = run.records
    if not run.ok:
        failures = [f"run {run.status}: {run.error}"]
        return {"fail_under": dict(thresholds), "passed": False, "failures": failures}
    applicable = {m: float(t) for m, t in thresholds.items() if m in records}
    failures = gate_failures([records], applicable)
    return {"fail_under": applicable, "passed": not failures, "failures": failures}


def write_gate(run: Run, thresholds: Mapping[str, float]) -> dict[str, Any]:
    """Keep the `gate` of `run_gate` in the run's run.json (so monitoring can mark the runs
    that fell below their gate) and return it."""
    run.gate = run_gate(run, thresholds)
    write_run(run)
    return run.gate


def apply_gate(runs: Sequence[Run], thresholds: Mapping[str, float]) -> list[str]:
    """Gate `runs`: each executed (not reused) run keeps its gate in its run.json, and the
    lines returned say what broke over all their records, a metric that no run recorded
    included; none while a run failed (that fails the whole on its own)."""
    if not thresholds:
        return []
    for run in runs:
        if not run.skipped:
            write_gate(run, thresholds)
    if any(not run.ok for run in runs):
        return []
    return gate_failures([run.records for run in runs], thresholds)
