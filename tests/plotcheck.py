"""Does a figure's legend cover what it explains? Read from matplotlib's own artists: each
legend's window extent against the display coordinates of every plotted point, line segment,
bar and text label of the figure's axes (the legend's own handles aside).

`covered(fig)` lists what each legend covers (empty: readable). `install()` makes a kernel
check every figure it displays (IPython's formatter for figures, so `plt.show()`, a figure
left at the end of a cell and `display(fig)` all count) and append one JSON line per
figure to the file `$PLOTCHECK_OUT`; `kernel_env(folder)` gives the environment that makes
every kernel started with it do so (an IPython startup file), and `reports(folder)` reads what
they wrote. `tests/test_plots.py` runs 04 so, and the strict nbval replay run of
`tests/test_notebooks.py` every lesson, at no extra cost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import Collection, PathCollection
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.path import Path as Polyline
from matplotlib.transforms import Bbox


def _name(artist: Any) -> str:
    label = str(artist.get_label() or "")
    return label if label and not label.startswith("_") else type(artist).__name__


def _pad(legend: Bbox, pixels: float) -> Bbox:
    return Bbox.from_extents(
        legend.x0 - pixels, legend.y0 - pixels, legend.x1 + pixels, legend.y1 + pixels
    )


def _line_hits(line: Line2D, box: Bbox, dpi: float) -> bool:
    points = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
    points = points[np.isfinite(points).all(axis=1)]
    if not len(points):
        return False
    marker = line.get_marker() not in (None, "None", "", " ", "none")
    radius = line.get_markersize() * dpi / 72 / 2 if marker else 0.0
    if marker and _pad(box, radius).count_contains(points):
        return True
    drawn = line.get_linestyle() not in ("None", "", " ", "none") and len(points) > 1
    return bool(drawn and Polyline(points).intersects_bbox(box, filled=False))


def _collection_hits(collection: Collection, box: Bbox, dpi: float) -> bool:
    if isinstance(collection, PathCollection):  # scatter: a marker at each offset
        offsets = np.asarray(collection.get_offsets(), dtype=float)
        points = collection.get_offset_transform().transform(offsets)
        points = points[np.isfinite(points).all(axis=1)]
        radius = float(np.sqrt(max(collection.get_sizes(), default=0.0))) * dpi / 72 / 2
        return bool(len(points) and _pad(box, radius).count_contains(points))
    transform = collection.get_transform()  # line collections (error bars, vlines), areas
    return any(
        len(path.vertices) > 1 and transform.transform_path(path).intersects_bbox(box, False)
        for path in collection.get_paths()
    )


def covered(fig: Figure) -> list[str]:
    """What any legend of `fig` covers, as `"<axes title>: legend covers <artist>"` lines."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legends: list[Legend] = [*fig.legends]
    legends += [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    found = []
    for legend in legends:
        if not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            title = ax.get_title() or "untitled axes"
            hits: list[Any] = []
            hits += [a for a in ax.lines if a.get_visible() and _line_hits(a, box, fig.dpi)]
            hits += [
                a for a in ax.collections if a.get_visible() and _collection_hits(a, box, fig.dpi)
            ]
            hits += [
                a
                for a in ax.patches
                if isinstance(a, Rectangle)
                and a.get_visible()
                and a.get_height() != 0
                and a.get_window_extent(renderer).overlaps(box)
            ]
            hits += [
                a
                for a in ax.texts
                if a.get_visible() and a.get_text() and a.get_window_extent(renderer).overlaps(box)
            ]
            bars = {id(p): c.get_label() for c in ax.containers for p in c}
            found += [f"{title}: legend covers {bars.get(id(a)) or _name(a)}" for a in hits]
    return sorted(set(found))


def _check(fig: Figure) -> None:
    titles = [ax.get_title() for ax in fig.axes]
    line = {"titles": titles, "covered": covered(fig)}
    with open(os.environ["PLOTCHECK_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def install() -> None:
    """In a kernel, before matplotlib is used: check every figure IPython renders for display,
    then render it as before (IPython registers `pylabtools.print_figure` as the figures'
    formatter when the inline backend starts, so the one wrapped here is the one it uses)."""
    from IPython.core import pylabtools

    original = pylabtools.print_figure

    def checked(fig: Figure, *args: Any, **kwargs: Any) -> Any:
        _check(fig)
        return original(fig, *args, **kwargs)

    pylabtools.print_figure = checked


def kernel_env(folder: Path) -> dict[str, str]:
    """Environment variables under which every IPython kernel checks the figures it displays
    and appends its findings to `folder/plots.jsonl`."""
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-plotcheck.py").write_text("import plotcheck\nplotcheck.install()\n")
    here = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return {
        "IPYTHONDIR": str(folder / "ipython"),
        "PLOTCHECK_OUT": str(folder / "plots.jsonl"),
        "PYTHONPATH": path,
    }


def reports(folder: Path) -> list[dict[str, Any]]:
    """One report per figure the kernels displayed: its axes titles and what legends cover."""
    out = folder / "plots.jsonl"
    lines = out.read_text().splitlines() if out.exists() else []
    return [json.loads(line) for line in lines]
