"""Text aikit renders shows as written: no `$...$` typeset as math, no Markdown or HTML read
as markup, in every HTML the widgets, the explorer, the eval report and `widgets.table` make."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import mistune
import pandas as pd

from aikit._markup import escape_html, escape_markdown, no_math
from aikit.evals.explore import cell_text, render_detail
from aikit.widgets import render_replies, table

NASTY = "$600 per month ... plus $30, **bold**, _under_, `code`, <b>tag</b> & a\\b"


class _Text(HTMLParser):
    """The text a browser shows for an HTML fragment, and its runs of text (MathJax pairs
    `$` delimiters only within one run)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.runs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.runs.append(data)


def _read(fragment: str) -> _Text:
    parser = _Text()
    parser.feed(fragment)
    parser.close()
    return parser


def test_escaped_html_shows_the_text_and_gives_mathjax_no_pair_of_dollars() -> None:
    out = escape_html(NASTY)
    assert out == (
        "<span>$</span>600 per month ... plus <span>$</span>30, **bold**, _under_, `code`,"
        " &lt;b&gt;tag&lt;/b&gt; &amp; a\\b"
    )
    read = _read(out)
    assert "".join(read.runs) == NASTY  # what the reader sees: the text as written
    assert set(read.tags) == {"span"}  # no <b> from the text
    assert all(run.count("$") <= 1 for run in read.runs)


def test_escaped_markdown_renders_to_the_text_as_written() -> None:
    out = escape_markdown(NASTY)
    assert out.startswith(r"\\$600 per month \.\.\. plus \\$30, \*\*bold\*\*, \_under\_, \`code\`")
    rendered = mistune.html(out)  # CommonMark, as JupyterLab's marked
    assert "<strong>" not in rendered and "<em>" not in rendered and "<code>" not in rendered
    text = "".join(_read(rendered).runs).strip()
    assert text == NASTY.replace("$", "\\$")  # each `$` escaped for MathJax's processEscapes
    assert "$" not in text.replace("\\$", "")


def test_a_table_of_text_is_escaped_left_aligned_and_stable() -> None:
    frame = pd.DataFrame(
        {"answer": ["It is **$600** a month <i>plus</i> $30.", "ok"], "score": [0.25, 1.0]},
        index=["$a", "b"],
    )
    out = table(frame, name="answers").data
    assert out == table(frame, name="answers").data  # byte-stable
    assert 'id="T_answers"' in out and "tex2jax_ignore" in out and "text-align: left" in out
    assert "**" not in out and "<i>" not in out and "&lt;i&gt;plus&lt;/i&gt;" in out
    assert "<span>$</span>600 a month" in out and "<span>$</span>a" in out
    assert ">0.250<" in out
    assert all(run.count("$") <= 1 for run in _read(out).runs)


class _Usage:
    prompt_tokens = 12
    completion_tokens = 5


class _Reply:
    def __init__(self, text: str, cost: float | None) -> None:
        self.text, self.cost, self.usage = text, cost, _Usage()
        self.latency_s, self.cached = 0.5, False


def test_playground_replies_are_escaped_in_padded_columns_apart() -> None:
    out = render_replies([_Reply("$5 or <b>$6</b>", 0.000012), _Reply("B", None)], ["A", "B"])
    assert "<span>$</span>5 or &lt;b&gt;<span>$</span>6&lt;/b&gt;" in out
    assert "<span>$</span>0.000012" in out and "unknown" in out
    assert "tex2jax_ignore" in out
    # The two columns: each value cell padded and ruled off from the one before (A's "12 in /
    # 5 out" ran into B's), the columns of equal width.
    row = re.search(r"<tr><th[^>]*>tokens</th>(.*?)</tr>", out)
    assert row is not None
    cells = re.findall(r"<td style='([^']*)'>([^<]*)</td>", row.group(1))
    assert [text for _, text in cells] == ["12 in / 5 out", "12 in / 5 out"]
    assert all("padding:4px 16px" in style and "border-left" in style for style, _ in cells)
    assert out.count("width:45%") == 2


def test_the_explorer_escapes_its_cells_and_detail() -> None:
    assert (
        cell_text("costs $5, then $6 <b>")
        == "costs <span>$</span>5, then <span>$</span>6 &lt;b&gt;"
    )
    row = pd.Series({"input": "$1 and $2", "expected": "<x>", "output": "**$3**"})
    detail = render_detail(row)
    assert "<span>$</span>1 and <span>$</span>2" in detail and "&lt;x&gt;" in detail
    assert "tex2jax_ignore" in detail


def test_no_math_wraps_a_fragment() -> None:
    assert no_math("<p>x</p>") == '<div class="tex2jax_ignore mathjax_ignore"><p>x</p></div>'


def test_the_eval_report_escapes_its_text(tmp_path: Path) -> None:
    from aikit.evals.report import write_html

    result = SimpleNamespace(
        name="cost <check> $",
        metrics=["accuracy"],
        usage={"cost_usd": "$0.10"},
        samples=pd.DataFrame(
            {
                "id": ["a"],
                "repeat": [0],
                "input": ["$600 or $30?"],
                "expected": ["<b>600</b>"],
                "output": ["**$600**"],
                "error": [None],
                "accuracy": [1.0],
            }
        ),
        summary=pd.DataFrame(
            {"metric": ["accuracy"], "mean": [1.0], "ci_low": [1.0], "ci_high": [1.0]}
        ),
    )
    page = write_html(result, tmp_path / "report.html").read_text()
    assert "<title>cost &lt;check&gt; $ eval</title>" in page
    assert "<span>$</span>600 or <span>$</span>30?" in page and "&lt;b&gt;600&lt;/b&gt;" in page
    assert "<td>1.000</td>" in page
