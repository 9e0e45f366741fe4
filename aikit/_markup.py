"""Text into HTML or Markdown that every front end shows as written: the one place aikit
escapes what it renders (the widgets, the explorer, the eval report, `widgets.table`).

Escaping `<` and `&` is not enough in Jupyter: JupyterLab typesets `$...$` in HTML outputs and
Markdown as MathJax, so "$600 per month ... plus $30" became italic math ("600permonthfor...").
MathJax pairs delimiters only within one run of text, so each `$` goes into its own `<span>`
(it still reads and copies as `$`), and a rendered block also carries the classes MathJax and
pandas use to say "no math here". In Markdown the emphasis characters get a backslash, and `$`
two: JupyterLab renders Markdown (marked, which turns `\\$` into `$`) and then typesets the
result, where MathJax (`processEscapes`) shows `\\$` as a plain `$`.
"""

from __future__ import annotations

import html
import re

NO_MATH = "tex2jax_ignore mathjax_ignore"  # JupyterLab's and MathJax 3's "do not typeset"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|$~])")
_EMPHASIS = re.compile(r"\*\*|__")


def escape_html(value: object) -> str:
    """`value` as HTML text, shown literally: `<`, `>`, `&` and quotes escaped; each `$` in a
    span of its own, so no `$...$` pair is typeset as math."""
    return html.escape(str(value)).replace("$", "<span>$</span>")


def escape_markdown(value: object) -> str:
    """`value` as Markdown text that JupyterLab shows literally: every character Markdown would
    read as markup (`*`, `_`, backticks, brackets, `<`, ...) behind a backslash, and `$` behind
    two (one for Markdown, one for MathJax)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value)).replace("\\$", "\\\\$")


def strip_emphasis(value: str) -> str:
    """Markdown's `**bold**` and `__bold__` markers removed (documents and answers quote them
    from the knowledge base; in a table they are noise)."""
    return _EMPHASIS.sub("", value)


def no_math(fragment: str, tag: str = "div") -> str:
    """An HTML fragment wrapped in a block that MathJax skips."""
    return f'<{tag} class="{NO_MATH}">{fragment}</{tag}>'
