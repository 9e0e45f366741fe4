"""What `aikit run` shows while it works: a line per run started and finished, and which cell
a running notebook is in.

Each run's child process reports its cells through papermill's progress bar, drawn as
`aikit-cell DONE TOTAL` on its stderr (`CELL_BAR`, counting every cell, Markdown too);
`read_cells` turns that stream into calls of `Progress.cell`. On a terminal the cells of the
running runs share one live status line, redrawn in place; elsewhere (CI logs, pipes) a run's
cell line is printed at most every `interval` seconds. The Dask executor reports runs when
they are submitted and when they finish only (its workers' processes are out of reach).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from aikit.registry import Run
    from aikit.runner.spec import RunSpec

# papermill's tqdm bar, drawn as one parseable token (`progress_bar=CELL_BAR` in the child).
CELL_BAR: dict[str, Any] = {
    "bar_format": "aikit-cell {n} {total}",
    "mininterval": 0,
    "miniters": 1,
    "ascii": True,
    "leave": False,
}
_CELL = re.compile(r"aikit-cell (\d+) (\d+)")
OnCell = Callable[[int, int], None]


def read_cells(stream: IO[bytes], on_cell: OnCell | None) -> list[str]:
    """Read a child's stderr to its end: cell tokens go to `on_cell`, the other lines are
    returned (the last one names a crash)."""
    lines: list[str] = []
    pending = b""

    def take(piece: bytes) -> None:
        text = piece.decode("utf-8", "replace").strip()
        found = _CELL.search(text)
        if found:
            if on_cell is not None:
                on_cell(int(found.group(1)), int(found.group(2)))
        elif text:
            lines.append(text)
            del lines[:-200]

    reader = getattr(stream, "read1", stream.read)
    while chunk := reader(65536):
        pending += chunk
        *done, pending = re.split(rb"[\r\n]", pending)
        for piece in done:
            take(piece)
    take(pending)
    return lines


def varying(parameter_sets: Sequence[Mapping[str, Any]]) -> list[str]:
    """The parameter names whose values differ between runs (all of them for a single run)."""
    if len(parameter_sets) == 1:
        return list(parameter_sets[0])
    names = dict.fromkeys(name for params in parameter_sets for name in params)
    return [
        name for name in names if len({repr(params.get(name)) for params in parameter_sets}) > 1
    ]


def _short(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
        return text if any(c in text for c in ".en") else f"{text}.0"  # 1.0 stays a float
    text = str(value)
    return text if len(text) <= 30 else text[:29] + "…"


def _records(records: Mapping[str, Any], limit: int = 5) -> str:
    """The recorded numbers and flags of a run, the ones a reader checks first."""
    shown = [
        f"{name}={_short(value)}"
        for name, value in records.items()
        if isinstance(value, int | float | bool) and value is not None
    ]
    more = f" (+{len(shown) - limit} more)" if len(shown) > limit else ""
    return "  ".join(shown[:limit]) + more


class Progress:
    """Prints run lines and cell progress for `total` runs to `stream` (thread-safe)."""

    def __init__(
        self,
        total: int,
        *,
        stream: IO[str] | None = None,
        interval: float = 5.0,
        varying: Iterable[str] = (),
        tty: bool | None = None,
    ) -> None:
        self.total, self.interval = total, interval
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.varying = list(varying)
        self._lock = threading.Lock()
        self._number: dict[str, int] = {}  # run_id -> its number in [N/total]
        self._labels: dict[str, str] = {}
        self._cells: dict[str, tuple[int, int]] = {}  # running runs -> (cell, cells)
        self._last: dict[str, float] = {}  # run_id -> when its last line was printed
        self._status = ""  # the live line now on the terminal
        self._drawn = 0.0

    def _label(self, spec: RunSpec) -> str:
        return self._label_of(spec.notebook, spec.parameters)

    def _label_of(self, notebook: str, params: Mapping[str, Any]) -> str:
        shown = " ".join(f"{k}={_short(params[k])}" for k in self.varying if k in params)
        return f"{Path(notebook).stem}" + (f" {shown}" if shown else "")

    def _prefix(self, run_id: str) -> str:
        if run_id not in self._number:
            self._number[run_id] = len(self._number) + 1
        return f"[{self._number[run_id]}/{self.total}]"

    def _print(self, line: str) -> None:
        if self.tty and self._status:
            self.stream.write("\r\x1b[K")
        self.stream.write(line + "\n")
        if self.tty and self._status:
            self.stream.write(self._status)
        self.stream.flush()

    def started(self, spec: RunSpec, what: str = "started") -> None:
        """A run begins (`what`: "started", or "submitted" where it cannot be seen start)."""
        with self._lock:
            run_id = spec.run_id
            self._labels[run_id] = self._label(spec)
            self._last[run_id] = time.monotonic()
            self._print(f"{self._prefix(run_id)} {self._labels[run_id]}: {what}")

    def reused(self, spec: RunSpec, earlier: Run) -> None:
        """A run that succeeded before and is not run again."""
        with self._lock:
            self._print(
                f"{self._prefix(spec.run_id)} {self._label(spec)}: reused,"
                f" succeeded earlier in {earlier.run_id}"
            )

    def cell(self, spec: RunSpec, done: int, cells: int) -> None:
        """A running run's notebook has run `done` of its `cells`: it is in cell `done + 1`."""
        number = min(done + 1, cells)
        with self._lock:
            run_id = spec.run_id
            self._cells[run_id] = (number, cells)
            now = time.monotonic()
            if self.tty:
                if now - self._drawn >= 0.2 or done == cells:
                    self._draw()
                    self._drawn = now
            elif now - self._last.get(run_id, 0.0) >= self.interval and done < cells:
                self._last[run_id] = now
                label = self._labels.get(run_id, Path(spec.notebook).stem)
                self._print(f"{self._prefix(run_id)} {label}: cell {number}/{cells}")

    def _compose(self) -> str:
        parts = [
            f"{self._prefix(run_id)} {self._labels.get(run_id, '')}: cell {n}/{total}"
            for run_id, (n, total) in self._cells.items()
        ]
        return " · ".join(parts)[:200]

    def _draw(self) -> None:
        self._status = self._compose()
        self.stream.write("\r\x1b[K" + self._status)
        self.stream.flush()

    def finished(self, run: Run) -> None:
        """A run ended: its status, duration and recorded numbers (or its error)."""
        with self._lock:
            self._cells.pop(run.run_id, None)
            label = self._labels.get(run.run_id) or self._label_of(run.notebook, run.parameters)
            took = f" in {run.duration_s:.1f} s" if run.duration_s is not None else ""
            detail = _records(run.records) if run.ok else (run.error or "")
            line = f"{self._prefix(run.run_id)} {label}: {run.status}{took}"
            if self.tty and self._status:  # the live line loses this run
                self.stream.write("\r\x1b[K")
                self._status = self._compose()
            self._print(line + (f"  {detail}" if detail else ""))


def summary_tables(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """A playbook's runs as one small table per notebook, with only the columns that have a
    value there (the notebooks record different things: one wide table would be mostly
    empty). The run id, the playbook name and the start time are left to the CSV/HTML."""
    tables = []
    for notebook, rows in frame.groupby("notebook", sort=False):
        shown = rows.drop(columns=["error", "name", "started", "notebook"], errors="ignore")
        if "calls" in shown and not shown["calls"].fillna(0).any():  # no model calls: no usage
            shown = shown.drop(columns=["calls", "tokens", "cost_usd"], errors="ignore")
        shown = shown.dropna(axis="columns", how="all")
        tables.append((str(notebook), shown))
    return tables
