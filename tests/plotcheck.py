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

import itertools
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


# -- no series hidden under another ---------------------------------------------------------
# A series' ink, in display pixels: points, and how far from each the ink reaches (a marker's
# radius, half a line's width). Lines are sampled along their segments every pixel or so.
Ink = tuple[np.ndarray, np.ndarray]
MAX_SAMPLES = 4000  # per polyline; lesson plots have far fewer pixels of line


def _pixels(points: float, dpi: float) -> float:
    return points * dpi / 72


def _finite(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    return points[np.isfinite(points).all(axis=1)]


def _along(vertices: np.ndarray) -> np.ndarray:
    """Points along a polyline, about a pixel apart (its vertices included)."""
    if len(vertices) < 2:
        return vertices
    lengths = np.hypot(*np.diff(vertices, axis=0).T)
    steps = np.clip(np.ceil(lengths), 1, max(1, MAX_SAMPLES // len(lengths))).astype(int)
    parts = [
        start + np.linspace(0, 1, n, endpoint=False)[:, None] * (end - start)
        for start, end, n in zip(vertices[:-1], vertices[1:], steps, strict=True)
    ]
    return np.vstack([*parts, vertices[-1:]])


def _ink(artist: Any, dpi: float) -> tuple[list[Ink], list[Ink]]:
    """An artist's ink as (markers, polylines): marker centres with their radii, and each
    drawn polyline's vertices with half its width."""
    markers: list[Ink] = []
    lines: list[Ink] = []
    if isinstance(artist, Line2D):
        if artist.get_marker() not in (None, "None", "", " ", "none"):
            centres = _finite(artist.get_transform().transform(artist.get_xydata()))
            radius = _pixels(artist.get_markersize(), dpi) / 2
            markers.append((centres, np.full(len(centres), radius)))
        if artist.get_linestyle() not in ("None", "", " ", "none"):
            path = artist.get_transform().transform_path(artist.get_path())
            for vertices in path.to_polygons(closed_only=False):
                width = _pixels(artist.get_linewidth(), dpi) / 2
                lines.append((_finite(vertices), np.full(1, width)))
    elif isinstance(artist, PathCollection):  # scatter: a marker at each offset
        offsets = artist.get_offset_transform().transform(artist.get_offsets())
        keep = np.isfinite(np.asarray(offsets, dtype=float)).all(axis=1)
        sizes = np.resize(np.asarray(artist.get_sizes(), dtype=float), len(keep))
        radii = np.sqrt(sizes) * dpi / 72 / 2
        markers.append((np.asarray(offsets, dtype=float)[keep], radii[keep]))
    elif isinstance(artist, Collection):  # line collections: error bars, vlines, hlines
        transform = artist.get_transform()
        widths = np.asarray(artist.get_linewidths(), dtype=float).reshape(-1)
        for i, path in enumerate(artist.get_paths()):
            width = _pixels(widths[i % len(widths)] if len(widths) else 1.0, dpi) / 2
            lines.append((_finite(transform.transform_path(path).vertices), np.full(1, width)))
    return markers, lines


def _near_polyline(points: np.ndarray, vertices: np.ndarray, reach: float) -> np.ndarray:
    """Which `points` lie within `reach` pixels of the polyline through `vertices`."""
    near = np.hypot(*(points - vertices[0]).T) <= reach
    for start, end in itertools.pairwise(vertices):
        seg = end - start
        t = np.clip((points - start) @ seg / max(float(seg @ seg), 1e-12), 0.0, 1.0)
        near |= np.hypot(*(points - (start + t[:, None] * seg)).T) <= reach
    return near


def _covered_by(points: np.ndarray, markers: list[Ink], lines: list[Ink]) -> np.ndarray:
    """Which `points` lie under the ink of a later series (within a marker's radius of its
    centre, or within half a line's width of the line)."""
    under = np.zeros(len(points), dtype=bool)
    for centres, radii in markers:
        if len(centres):
            gaps = np.hypot(*(points[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
            under |= (gaps <= np.maximum(radii, 0.5)[None, :]).any(axis=1)
    for vertices, width in lines:
        if len(vertices):
            under |= _near_polyline(points, vertices, max(float(width[0]), 0.5))
    return under


def _series(ax: Any) -> list[Any]:
    """The axes' plotted series in the order they are drawn (zorder, then as added)."""
    kinds = (Line2D, PathCollection, Collection)
    drawn = [a for a in ax.get_children() if isinstance(a, kinds) and a.get_visible()]
    drawn = [a for a in drawn if not isinstance(a, Collection) or _is_lines(a)]
    return sorted(drawn, key=lambda a: a.get_zorder())  # sorted() is stable


def _is_lines(collection: Collection) -> bool:
    """A scatter or a line collection: a series, not an area (fill_between) or a mesh."""
    if isinstance(collection, PathCollection):
        return True
    face = np.asarray(collection.get_facecolor(), dtype=float).reshape(-1, 4)
    return not len(face) or bool((face[:, 3] == 0).all())


def hidden(fig: Figure) -> list[str]:
    """Each series of `fig` whose every point is under series drawn after it, as
    `"<axes title>: <series> is hidden under <later series>"` lines (empty: all visible).

    A point is under another series' marker when within that marker's radius of its centre
    (filled or not), under a line within half its width; points outside the axes do not count.
    Parts of one container (an errorbar's line, caps and bars) do not hide each other.
    """
    fig.canvas.draw()
    found = []
    for ax in fig.axes:
        title = ax.get_title() or "untitled axes"
        view = _pad(ax.get_window_extent(), 1.0)
        group = {id(part): id(c) for c in ax.containers for part in _parts(c)}
        labels = {id(part): c.get_label() for c in ax.containers for part in _parts(c)}
        series = _series(ax)
        inks = [_ink(a, fig.dpi) for a in series]
        for i, artist in enumerate(series):
            markers, lines = inks[i]
            points = np.vstack(
                [np.zeros((0, 2)), *(c for c, _ in markers), *(_along(v) for v, _ in lines)]
            )
            inside = (points[:, 0] >= view.x0) & (points[:, 0] <= view.x1)
            points = points[inside & (points[:, 1] >= view.y0) & (points[:, 1] <= view.y1)]
            if not len(points):
                continue
            under = np.zeros(len(points), dtype=bool)
            names = []
            for later, ink in zip(series[i + 1 :], inks[i + 1 :], strict=True):
                if id(artist) in group and group.get(id(later)) == group[id(artist)]:
                    continue
                hits = _covered_by(points, *ink)
                if hits.any():
                    under |= hits
                    names.append(labels.get(id(later)) or _name(later))
            if under.all():
                name = labels.get(id(artist)) or _name(artist)
                found.append(f"{title}: {name} is hidden under {', '.join(dict.fromkeys(names))}")
    return sorted(set(found))


def _parts(container: Any) -> list[Any]:
    """Every artist of a container (an errorbar's holds tuples of caps and bars)."""
    parts: list[Any] = []
    for item in container:
        parts += _parts(item) if isinstance(item, tuple | list) else [item]
    return [p for p in parts if p is not None]


def _check(fig: Figure) -> None:
    titles = [ax.get_title() for ax in fig.axes]
    line = {"titles": titles, "covered": covered(fig), "hidden": hidden(fig)}
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
