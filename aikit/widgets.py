"""ipywidgets for trying prompts (`playground()`) and exploring eval results (`explore()`).

In JupyterLab it is a live form. A saved notebook keeps only a one-line static summary (what
the widget does; run the cell to use it), which is what a reader sees before running the cell
and what papermill and nbval compare, so notebooks that show a widget stay byte-stable. The
outer widget's model id is derived from a per-kernel counter, not random: running a saved
notebook again from a fresh kernel gives the same ids, so saving it changes nothing in git.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aikit._markup import NO_MATH, escape_html, strip_emphasis
from aikit.errors import AikitError, MissingDependencyError

if TYPE_CHECKING:
    from aikit.llm import Reply
    from aikit.settings import Settings


_IDS = itertools.count(1)
_NAMESPACE = uuid.UUID("5c1d0e6e-8a3b-4d47-9a51-6a1e2b7c0f10")


def _stable_model_id(kind: str) -> str:
    """The n-th widget of a kernel gets the same model id in every fresh kernel (no git churn
    when a reader runs and saves a notebook); ids stay unique within a kernel."""
    return uuid.uuid5(_NAMESPACE, f"aikit.widgets.{kind}.{next(_IDS)}").hex


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:
        raise MissingDependencyError(
            "the playground needs ipywidgets; install it with pip install ipywidgets"
        ) from exc
    return ipywidgets


@dataclass
class Playground:
    """A prompt playground: system and user text, a model (profile), temperature, max tokens,
    a Run button and a compare mode with a second prompt side by side.

    Set the fields (`.system.value`, `.user.value`, `.compare.value`, ...) and call `.run()`
    from code, or click Run; `.replies` holds the last answers.
    """

    choices: dict[str, Settings]
    replies: list[Reply] = field(default_factory=list)
    widget: Any = None

    def __post_init__(self) -> None:
        w = _ipywidgets()

        def wide() -> Any:  # one Layout per widget: hiding one must not hide the others
            return w.Layout(width="100%")

        labels = [(f"{name} ({s.provider} · {s.model})", name) for name, s in self.choices.items()]
        self.model = w.Dropdown(options=labels, description="model", layout=wide())
        self.system = w.Textarea(
            placeholder="system prompt (optional)", description="system", layout=wide()
        )
        self.user = w.Textarea(placeholder="your prompt", description="prompt A", layout=wide())
        self.user_b = w.Textarea(
            placeholder="a second prompt to compare", description="prompt B", layout=wide()
        )
        fit = {"description_width": "initial"}  # the whole label, not "temperat…"
        self.temperature = w.FloatSlider(
            value=0.0, min=0.0, max=2.0, step=0.1, description="temperature", style=fit
        )
        self.max_tokens = w.IntSlider(
            value=64, min=1, max=1024, description="max tokens", style=fit
        )
        self.compare = w.Checkbox(value=False, description="compare A and B")
        self.run_button = w.Button(description="Run", button_style="primary")
        self.output = w.HTML()
        self.user_b.layout.display = "none"
        self.compare.observe(self._toggle, names="value")
        self.run_button.on_click(lambda _: self.run())
        self.widget = w.VBox(
            [
                self.model,
                self.system,
                self.user,
                self.user_b,
                w.HBox([self.temperature, self.max_tokens, self.compare, self.run_button]),
                self.output,
            ],
            model_id=_stable_model_id("playground"),
        )

    def _toggle(self, change: dict[str, Any]) -> None:
        self.user_b.layout.display = "" if change["new"] else "none"

    def run(self) -> list[Reply]:
        """Send the prompt (and prompt B in compare mode); show and return the replies."""
        from aikit.llm import chat

        prompts = [self.user.value] + ([self.user_b.value] if self.compare.value else [])
        if not any(p.strip() for p in prompts):
            self.output.value = "<i>Type a prompt first.</i>"
            return []
        settings = self.choices[self.model.value]
        self.output.value = "<i>running…</i>"
        try:
            self.replies = [
                chat(
                    prompt,
                    system=self.system.value or None,
                    temperature=self.temperature.value,
                    max_tokens=self.max_tokens.value,
                    settings=settings,
                )
                for prompt in prompts
            ]
        except AikitError as exc:
            self.output.value = f"<b>error:</b> {escape_html(exc)}"
            return []
        self.output.value = render_replies(self.replies, ["A", "B"][: len(self.replies)])
        return self.replies

    def summary(self) -> str:
        """The static one-line description shown where no front end runs the widget."""
        settings = self.choices[self.model.value]
        return (
            f"Prompt playground: model {self.model.value} ({settings.provider} · {settings.model});"
            " run this cell to send prompts, set temperature and max tokens, pick a profile of"
            " aikit.toml and compare two prompts side by side"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.widget._repr_mimebundle_(**kwargs) or {}
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = self.summary()
        return data


def render_replies(replies: list[Reply], labels: list[str]) -> str:
    """An HTML table of replies side by side: answer, tokens, cost, latency, cached. Each reply
    has a column of equal width, padded and ruled off from its neighbour, so A's figures do not
    run into B's."""

    def cost(reply: Reply) -> str:
        return "unknown" if reply.cost is None else escape_html(f"${reply.cost:.6f}")

    rows: list[tuple[str, Callable[[Reply], str]]] = [
        ("answer", lambda r: f"<pre style='white-space:pre-wrap'>{escape_html(r.text)}</pre>"),
        ("tokens", lambda r: f"{r.usage.prompt_tokens} in / {r.usage.completion_tokens} out"),
        ("cost", cost),
        ("latency", lambda r: f"{r.latency_s:.2f} s"),
        ("from cache", lambda r: "yes" if r.cached else "no"),
    ]
    pad = "padding:4px 16px 4px 8px;text-align:left;vertical-align:top"
    rule = f"{pad};border-left:1px solid #ccc"
    width = f"width:{90 // max(1, len(replies))}%"
    head = "".join(f"<th style='{rule};{width}'>{escape_html(label)}</th>" for label in labels)
    body = "".join(
        f"<tr><th style='{pad}'>{name}</th>"
        + "".join(f"<td style='{rule}'>{cell(r)}</td>" for r in replies)
        + "</tr>"
        for name, cell in rows
    )
    return (
        f"<table class='{NO_MATH}' style='border-collapse:collapse;width:100%'>"
        f"<tr><th style='{pad}'></th>{head}</tr>{body}</table>"
    )


def table(frame: Any, *, name: str, precision: int = 3) -> Any:
    """`frame` as an HTML table for reading text (`IPython.display.HTML`): cells left-aligned
    and escaped (no `$...$` typeset as math, no raw HTML), Markdown emphasis (`**€600**` in
    documents and answers) removed; `name` fixes the table's HTML id, so a saved output is
    byte-stable."""
    from IPython.display import HTML

    text = frame.map(lambda v: escape_html(strip_emphasis(v)) if isinstance(v, str) else v)
    left = [{"selector": "td, th", "props": "text-align: left; vertical-align: top"}]
    styled = (
        text.style.set_uuid(name)
        .format(precision=precision)
        .format_index(escape_html, axis=0)
        .format_index(escape_html, axis=1)
        .set_table_styles(left)
        .set_table_attributes(f'class="{NO_MATH}"')
    )
    return HTML(styled.to_html())  # type: ignore[no-untyped-call]


def playground(*, config: str | Path | None = None) -> Playground:
    """A prompt playground over the default settings, every embedded model (`local:NAME`) and
    every profile in `config` (default: the project's `aikit.toml`, found as the settings find
    it, from the notebook's folder up)."""
    from aikit.local import MODELS
    from aikit.settings import FIND, Settings, profiles

    found = FIND if config is None else config
    choices = profiles(found)
    default = choices.pop("default")
    local = {
        f"local:{name}": Settings.resolve(config=found, profile=None, provider="local", model=name)
        for name in MODELS
        if (default.provider, default.model) != ("local", name)
    }
    return Playground(choices={"default": default, **local, **choices})


@dataclass
class Explorer:
    """An eval explorer over an `EvalResult` or a `Comparison`: pick a metric and a status
    filter (all, passed, failed, unscored, error; for a comparison also regressed and
    improved), page through the samples, and click a row's id (or pick it under `sample`) to
    see its input, expected answer and output(s) side by side. Set `.metric.value`,
    `.status.value`, `.page.value`, `.sample.value` from code too; `.rows()` is the filtered
    table."""

    source: Any
    page_size: int = 10
    widget: Any = None

    def __post_init__(self) -> None:
        w = _ipywidgets()
        self._w = w
        self._table = _explorer_table(self.source)
        metrics = _explorer_metrics(self.source)
        statuses = ["all", "passed", "failed", "unscored", "error"]
        if hasattr(self.source, "regressions"):
            statuses += ["regressed", "improved"]
        self.metric = w.Dropdown(options=metrics, description="metric")
        self.status = w.Dropdown(options=statuses, value="all", description="show")
        self.page = w.BoundedIntText(value=1, min=1, max=1, description="page")
        self.sample = w.Dropdown(options=[], description="sample")
        self.caption = w.HTML()
        self.table = w.GridBox(layout=w.Layout(grid_gap="2px 12px", align_items="baseline"))
        self.detail = w.HTML()
        for control in (self.metric, self.status, self.page):
            control.observe(lambda _: self.refresh(), names="value")
        self.sample.observe(lambda _: self._show_detail(), names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.metric, self.status, self.page]),
                self.caption,
                self.table,
                self.sample,
                self.detail,
            ],
            model_id=_stable_model_id("explorer"),
        )
        self.refresh()

    def rows(self) -> Any:
        """The samples that pass the current metric and status filter."""
        from aikit.evals.explore import filter_rows

        return filter_rows(self._table, self.metric.value, self.status.value, self._threshold())

    def _threshold(self) -> float:
        return float(getattr(self.source, "threshold", 0.5))

    def refresh(self) -> None:
        """Re-draw the table for the current filter and page; select the page's first sample
        unless the selected one is on it."""
        from aikit.evals.explore import page_caption, page_columns

        rows = self.rows()
        pages = max(1, -(-len(rows) // self.page_size))
        self.page.max = pages
        page = min(self.page.value, pages)
        shown = rows.iloc[(page - 1) * self.page_size : page * self.page_size]
        self.caption.value = page_caption(len(rows), page, pages)
        columns = page_columns(shown, self.metric.value)
        self._draw(shown, columns)
        ids = [str(i) for i in shown["id"]]
        current = self.sample.value
        self.sample.options = ids
        self.sample.value = current if current in ids else (ids[0] if ids else None)
        self._show_detail()

    def _draw(self, shown: Any, columns: list[str]) -> None:
        """The table as a grid: a header, then per sample a button with its id (click: show
        it) and one cell per column, long text cut at 80 characters."""
        from aikit.evals.explore import cell_text

        w = self._w
        cells = [w.HTML(f"<b>{escape_html(c)}</b>") for c in columns]
        for _, row in shown.iterrows():
            sample = str(row["id"])
            button = w.Button(
                description=sample,
                tooltip=f"show sample {sample}",
                layout=w.Layout(width="max-content"),
            )
            button.on_click(lambda _, sample=sample: self._select(sample))
            cells.append(button)
            cells += [w.HTML(cell_text(row[c])) for c in columns[1:]]
        self.table.children = cells
        widths = ["max-content"] + ["minmax(0, 1fr)"] * (len(columns) - 1)
        self.table.layout.grid_template_columns = " ".join(widths)

    def _select(self, sample: str) -> None:
        self.sample.value = sample

    def _show_detail(self) -> None:
        from aikit.evals.explore import render_detail

        for cell in self.table.children:  # mark the shown sample's row
            if isinstance(cell, self._w.Button):
                cell.button_style = "info" if cell.description == self.sample.value else ""
        if not self.sample.value:
            self.detail.value = ""
            return
        row = self._table[self._table["id"].astype(str) == self.sample.value].iloc[0]
        self.detail.value = render_detail(row)

    def summary(self) -> str:
        """The static one-line description shown before the cell runs (and where no front end
        runs the widget)."""
        from aikit.evals.explore import caption

        return caption(self.source, self._table, self._threshold())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.widget._repr_mimebundle_(**kwargs) or {}
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = self.summary()
        return data


def _explorer_table(source: Any) -> Any:
    from aikit.evals.explore import table_of

    return table_of(source)


def _explorer_metrics(source: Any) -> list[str]:
    metrics = source.metrics if hasattr(source, "metrics") else list(source.summary["metric"])
    return [str(m) for m in metrics]


def explore(result_or_comparison: Any, *, page_size: int = 10) -> Explorer:
    """An explorer widget for an `aikit.evals.EvalResult` or `Comparison`."""
    return Explorer(result_or_comparison, page_size=page_size)
