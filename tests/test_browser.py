"""The kit as a person uses it: JupyterLab on 127.0.0.1, driven by headless Chromium.

Needs Debian's chromium at /usr/bin/chromium (`.ci/run` installs it) and the Python
`playwright` package; skipped without them. One JupyterLab serves every test of the module.
Every lesson runs all its cells from its cassette (`AIKIT_CACHE=replay`) in a real `aikit`
kernel and must end with no error output; the playground talks to the loopback echo server
through an `aikit.toml` profile; widget labels must be whole (not cut to "temperat…"), and a
clicked explorer row must show its sample. Run All and save leaves every lesson byte for byte
as committed (what `git status` checks); replayed here, since the live strict nbval run
(tests/test_notebooks.py) already checks that a live run gives the committed outputs.
Screenshots (and the diff of a lesson that saved differently) go to test-artifacts/.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from openai_server import OpenAIServer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
    ),
]
playwright_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """JupyterLab serving a copy of notebooks/, with a token, on 127.0.0.1."""
    root = tmp_path_factory.mktemp("lab")
    for item in (ROOT / "notebooks").iterdir():
        if item.suffix == ".ipynb" or item.name in ("cassettes", "data"):
            (shutil.copytree if item.is_dir() else shutil.copy)(item, root / item.name)
    echo = OpenAIServer().start()
    (root / "aikit.toml").write_text(
        f'[profiles.echo]\nprovider = "openai"\nbase_url = "{echo.base_url}"\n'
        'model = "test-model"\napi_key_env = "ECHO_KEY"\ncache = "off"\n'
    )
    settings = root / ".jupyter" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    # Render every cell: with windowing, cells scrolled out of view are not in the page.
    tracker = settings.parent / "notebook-extension"
    tracker.mkdir()
    (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIKIT_", "OPENAI_"))}
    env.update(
        AIKIT_CACHE="replay",
        AIKIT_HOME=str(root / ".aikit-home"),
        ECHO_KEY="unused",
        JUPYTER_CONFIG_DIR=str(root / ".jupyter"),
        # Its own data folder: notebook trust (nbsignatures.db) from earlier runs on this machine
        # would make JupyterLab render saved widgets instead of their static text.
        JUPYTER_DATA_DIR=str(root / ".data"),
        JUPYTER_RUNTIME_DIR=str(root / ".runtime"),
    )
    log = (root / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
            "--ServerApp.open_browser=False",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield {"base": base, "token": token, "root": root, "echo": echo}
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        echo.stop()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WIDGET = "application/vnd.jupyter.widget-view+json"
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'

# Labels the page cuts off: wider content than box ("temperat…"), for each label of a widget.
CLIPPED = """root => [...root.querySelectorAll('label, .widget-label, button')]
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
    .map(e => e.textContent)"""


def _open(browser: Any, lab: dict[str, Any], notebook: str) -> Any:
    """A fresh page with `notebook` open and its kernel ("Python (aikit)") started."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # `reset`: a fresh workspace of its own, so no tab of another test or page is restored
    # beside this notebook.
    workspace = f"{lab['base']}/lab/workspaces/{notebook[:-6].replace('_', '-')}"
    page.goto(f"{workspace}/tree/{notebook}?reset&token={lab['token']}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    expect = playwright_api.expect
    expect(page.locator(".jp-NotebookPanel")).to_have_count(1, timeout=30_000)
    page.wait_for_selector(
        ".jp-NotebookPanel-toolbar .jp-KernelStatus, .jp-Toolbar-kernelName", timeout=60_000
    )
    expect(page.locator(".jp-NotebookPanel-toolbar")).to_contain_text(
        "Python (aikit)", timeout=60_000
    )
    return page


def _start_run_all(page: Any) -> None:
    """Run > Run All Cells, as a person would."""
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator('[data-command="runmenu:run-all"]').click()


def _wait_until_all_ran(page: Any, timeout_s: float = 180) -> None:
    """Until every code cell shows an execution count (none waiting as `[*]`), or an error
    output appears (Run All stops there; the caller's check reports it)."""
    page.wait_for_function(
        r"""error => {
            if (document.querySelector('.jp-NotebookPanel ' + error)) return true;
            const prompts = [...document.querySelectorAll(
                '.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')];
            return prompts.length > 0 && prompts.every(p => /\[\d+\]/.test(p.textContent));
        }""",
        arg=STDERR,
        timeout=timeout_s * 1000,
    )


def _run_all(page: Any) -> None:
    _start_run_all(page)
    _wait_until_all_ran(page)


def _assert_no_error_output(page: Any, notebook: str) -> None:
    panel = page.locator(".jp-NotebookPanel")
    errors = panel.locator(STDERR)
    if errors.count():
        page.screenshot(path=str(ARTIFACTS / f"{notebook}-error.png"), full_page=True)
    assert errors.count() == 0, errors.all_inner_texts()[:3]
    assert "Traceback" not in panel.inner_text()


def _wait_for_text(path: Path, text: str, timeout_s: float = 120) -> str:
    """The file's text once it holds `text` (or, after `timeout_s`, whatever it holds)."""
    deadline = time.monotonic() + timeout_s
    content = path.read_text(encoding="utf-8")
    while text not in content and time.monotonic() < deadline:
        time.sleep(0.5)
        content = path.read_text(encoding="utf-8")
    return content


# Lessons that print what they measured (06: the latency guards add): a save changes those
# lines, as it would after any real measurement; tests/sanitize.cfg's timing rule, nothing more.
MEASURES_TIME = {"06_guardrails.ipynb"}


def _save_and_assert_as_committed(page: Any, lab: dict[str, Any], notebook: str) -> None:
    """Save (Ctrl+S, as a person would) and check the file is the committed one, byte for
    byte: a reader who runs a lesson and saves it has nothing to commit."""
    saved_file = lab["root"] / notebook
    before = saved_file.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 60  # a loaded machine saves seconds later
    saved = ""
    while time.monotonic() < deadline:  # saved: a new file, written whole (it ends the JSON)
        if saved_file.stat().st_mtime_ns != before:
            saved = saved_file.read_text("utf-8")
            if saved.rstrip().endswith("}"):
                break
        time.sleep(0.2)
    assert saved.rstrip().endswith("}"), f"{notebook} was not saved"
    committed = (ROOT / "notebooks" / notebook).read_text("utf-8")
    if notebook in MEASURES_TIME:  # its measured latencies change every run; nothing else may
        saved, committed = (re.sub(r"\d+\.\d+ ?s\b", "N.NN s", t) for t in (saved, committed))
    if saved != committed:
        diff = difflib.unified_diff(
            committed.splitlines(), saved.splitlines(), "committed", "saved", lineterm=""
        )
        (ARTIFACTS / f"{notebook[:-6]}-saved.diff").write_text("\n".join(diff))
    assert saved == committed, f"{notebook}: saved after Run All, it differs from the commit"


def _widget_views(notebook: dict[str, Any]) -> list[Any]:
    """Each widget output of a notebook: its model id and static text."""
    return [
        (out["data"][WIDGET]["model_id"], "".join(out["data"]["text/plain"]))
        for cell in notebook["cells"]
        for out in cell.get("outputs", [])
        if WIDGET in out.get("data", {})
    ]


def test_prompting_notebook_runs_all_cells_and_its_playground_answers(
    browser: Any, lab: dict[str, Any]
) -> None:
    page = _open(browser, lab, "01_prompting.ipynb")
    expect = playwright_api.expect
    outputs = page.locator(".jp-NotebookPanel .jp-OutputArea-output")
    # Before the cell runs, the saved output is the widget's static text: what it does.
    saved = outputs.filter(has_text="Prompt playground:")
    expect(saved).to_have_count(1, timeout=30_000)
    assert "run this cell to send prompts" in saved.inner_text()
    assert "open the notebook in JupyterLab" not in saved.inner_text()
    _run_all(page)
    expect(outputs.filter(has_text="accuracy = ")).to_have_count(1)
    expect(outputs.filter(has_text="I HAVE BEEN PWNED")).to_have_count(1)
    pivot = outputs.filter(has_text="instructed").filter(has=page.locator("table"))
    expect(pivot).to_have_count(1)  # the accuracy table rendered as HTML
    expect(pivot.locator("td").first).to_have_text(re.compile(r"^[01]\.\d+$"))  # a share
    _assert_no_error_output(page, "01_prompting")
    page.screenshot(path=str(ARTIFACTS / "01_prompting.png"), full_page=False)
    # Saved after a run, the notebook is the committed one: the same widget ids and no widget
    # state, so a reader's clone shows no change in them.
    _save_and_assert_as_committed(page, lab, "01_prompting.ipynb")
    committed = json.loads((ROOT / "notebooks" / "01_prompting.ipynb").read_text("utf-8"))
    assert "widgets" not in committed["metadata"] and _widget_views(committed) != []

    widget = page.locator(".jp-NotebookPanel .widget-vbox").last
    expect(widget).to_be_visible(timeout=60_000)
    widget.scroll_into_view_if_needed()
    expect(widget.locator("label", has_text="temperature")).to_be_visible()
    assert widget.evaluate(CLIPPED) == []  # every label whole: "temperature", "max tokens"
    options = widget.locator("select").first.locator("option").all_inner_texts()
    choices = [o.replace("\xa0", " ") for o in options]  # ipywidgets shows spaces as nbsp
    assert choices[0].startswith("default (") and "echo (openai · test-model)" in choices
    widget.locator("select").first.select_option(index=choices.index("echo (openai · test-model)"))
    prompt = widget.locator("textarea").nth(1)
    prompt.fill("Which planet is largest?")
    widget.get_by_role("button", name="Run").click()
    expect(widget).to_contain_text("echo: Which planet is largest?", timeout=60_000)
    expect(widget).to_contain_text("from cache")
    assert lab["echo"].requests[-1]["messages"][-1]["content"] == "Which planet is largest?"
    widget.screenshot(path=str(ARTIFACTS / "playground.png"))
    page.close()


def test_eval_explorer_filters_and_a_clicked_row_shows_its_sample(
    browser: Any, lab: dict[str, Any]
) -> None:
    page = _open(browser, lab, "03_evals.ipynb")
    expect = playwright_api.expect
    _run_all(page)
    _assert_no_error_output(page, "03_evals")
    _save_and_assert_as_committed(page, lab, "03_evals.ipynb")  # before a filter is changed
    explorer = page.locator(".jp-NotebookPanel .widget-vbox").filter(
        has=page.locator("option", has_text="regressed")
    )
    try:
        expect(explorer).to_have_count(1, timeout=60_000)
    except AssertionError:
        page.screenshot(path=str(ARTIFACTS / "explorer-failure.png"), full_page=True)
        raise
    explorer.scroll_into_view_if_needed()
    caption, rows = explorer.locator("p").first, explorer.locator(".widget-gridbox button")
    detail = explorer.locator(".widget-html").filter(has=page.locator("pre"))
    expect(caption).to_have_text(re.compile(r"^48 samples · page 1 of 5"), timeout=60_000)
    expect(rows).to_have_count(10)  # a page of 10
    sample = explorer.locator("select").last
    first = rows.first.inner_text()
    assert sample.evaluate("s => s.options[s.selectedIndex].text") == first  # not blank
    expect(detail).to_have_count(1)
    # Clicking a row's id shows that sample: its input, expected answer and outputs.
    third = rows.nth(2)
    cell = third.locator("xpath=following-sibling::*[1]").inner_text().strip()
    third.click()
    expect(detail).to_contain_text(cell[:30])
    assert sample.evaluate("s => s.options[s.selectedIndex].text") == third.inner_text()
    assert explorer.evaluate(CLIPPED) == []  # labels and ids whole, not wrapped or cut
    heights = {round(b.bounding_box()["height"]) for b in rows.all()}
    assert len(heights) == 1  # no id wraps onto a second line
    explorer.locator("select").nth(1).select_option(label="regressed")
    expect(caption).to_have_text(re.compile(r"^1 sample · page 1 of 1"), timeout=30_000)
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_text("sent-06")  # the regression the notebook reports
    # The saved static text counts regressions the way the filter does: save, then wait for
    # the file to hold it (on a loaded machine the save lands seconds later).
    page.keyboard.press("Control+s")
    saved = _wait_for_text(lab["root"] / "03_evals.ipynb", "regressed per metric: accuracy 1;")
    assert "regressed per metric: accuracy 1;" in saved
    explorer.screenshot(path=str(ARTIFACTS / "explorer.png"))
    page.close()


def test_run_all_replays_every_other_lesson_without_errors_and_saves_it_as_committed(
    browser: Any, lab: dict[str, Any]
) -> None:
    # 01 and 03 run all their cells in the tests above; the others run side by side, one
    # page and kernel each (their kernels start and wait on servers at the same time).
    others = [n for n in LESSONS if n[:2] not in ("01", "03")]
    assert len(others) >= 4
    pages = {notebook: _open(browser, lab, notebook) for notebook in others}
    for page in pages.values():
        _start_run_all(page)
    for notebook, page in pages.items():
        _wait_until_all_ran(page, timeout_s=300)
        _assert_no_error_output(page, notebook[:-6])
        _save_and_assert_as_committed(page, lab, notebook)
    # 02: tables of text read left to right, with no raw Markdown (`**€600**`).
    page = pages["02_rag.ipynb"]
    table = page.locator(".jp-NotebookPanel .jp-OutputArea-output table").filter(
        has_text="home-office stipend of €600"
    )
    playwright_api.expect(table).to_have_count(1)
    assert "**" not in table.inner_text()
    align = table.locator("td").last.evaluate("td => getComputedStyle(td).textAlign")
    assert align == "left"
    for page in pages.values():
        page.close()


CURRENCY = re.compile(r"[$€£]")
MATH = "mjx-container, .MathJax, .MathJax_Display"


def _cell_texts(notebook: dict[str, Any]) -> list[str]:
    """Per cell, its source and every output's text, as saved."""
    texts = []
    for cell in notebook["cells"]:
        parts = ["".join(cell["source"])]
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            for mime in ("text/html", "text/markdown", "text/plain"):
                parts.append("".join(out.get("data", {}).get(mime, "")))
        texts.append("\n".join(parts))
    return texts


def test_mathjax_typesets_raw_dollars_and_not_escaped_ones(
    browser: Any, lab: dict[str, Any]
) -> None:
    # The control for the lessons' check below: in this JupyterLab, MathJax does typeset a
    # `$...$` pair in Markdown and in an HTML output, and does not once aikit escapes it.
    from aikit._markup import escape_html, escape_markdown

    text = "a chair costs $600 per month, plus $30"
    html_out = nbformat_output(f"<p>{text}</p>")
    escaped_out = nbformat_output(f"<p>{escape_html(text)}</p>")
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "raw-md", "metadata": {}, "source": text},
            {
                "cell_type": "markdown",
                "id": "esc-md",
                "metadata": {},
                "source": escape_markdown(text),
            },
            _code_cell("raw-html", html_out),
            _code_cell("esc-html", escaped_out),
        ],
        "metadata": {
            "kernelspec": {"name": "aikit", "display_name": "Python (aikit)", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (lab["root"] / "mathjax_control.ipynb").write_text(json.dumps(notebook))
    page = _open(browser, lab, "mathjax_control.ipynb")
    cells = page.locator(".jp-NotebookPanel .jp-Cell")
    expect = playwright_api.expect
    expect(cells.nth(0).locator(MATH).first).to_be_attached(timeout=60_000)
    expect(cells.nth(2).locator(MATH).first).to_be_attached(timeout=60_000)
    for index in (1, 3):
        assert cells.nth(index).locator(MATH).count() == 0
        expect(cells.nth(index)).to_contain_text("$600 per month, plus $30")
    page.close()


def nbformat_output(html: str) -> dict[str, Any]:
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {"text/html": html, "text/plain": "<IPython.core.display.HTML object>"},
    }


def _code_cell(cell_id: str, output: dict[str, Any]) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "id": cell_id,
        "metadata": {},
        "execution_count": 1,
        "source": "display(HTML(...))",
        "outputs": [output],
    }


@pytest.mark.parametrize("notebook", LESSONS)
def test_each_lesson_renders_no_math_from_a_currency_sign_and_its_plots(
    browser: Any, lab: dict[str, Any], notebook: str
) -> None:
    # As committed (not run): every cell whose source or saved outputs hold a currency sign
    # renders without MathJax; each plot is shown and saved as a screenshot.
    saved = json.loads((ROOT / "notebooks" / notebook).read_text("utf-8"))
    texts = _cell_texts(saved)
    plots = sum(
        "image/png" in out.get("data", {}) for c in saved["cells"] for out in c.get("outputs", [])
    )
    page = _open(browser, lab, notebook)
    cells = page.locator(".jp-NotebookPanel .jp-Cell")
    expect = playwright_api.expect
    expect(cells).to_have_count(len(saved["cells"]), timeout=60_000)
    images = page.locator(".jp-NotebookPanel .jp-OutputArea-output img")
    expect(images).to_have_count(plots, timeout=60_000)
    # MathJax typesets a moment after a cell renders (the control above shows it does here).
    page.wait_for_timeout(3000)
    typeset = [
        (index, cells.nth(index).inner_text()[:120])
        for index, text in enumerate(texts)
        if CURRENCY.search(text) and cells.nth(index).locator(MATH).count()
    ]
    for index in range(plots):
        image = images.nth(index)
        image.scroll_into_view_if_needed()
        image.screenshot(path=str(ARTIFACTS / f"{notebook[:-6]}-plot-{index + 1}.png"))
    page.close()
    assert typeset == [], f"{notebook}: MathJax typeset text with a currency sign: {typeset}"
