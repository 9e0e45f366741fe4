"""The kit as a person uses it: JupyterLab on 127.0.0.1, driven by headless Chromium.

Needs Debian's chromium at /usr/bin/chromium (`.ci/run` installs it) and the Python
`playwright` package; skipped without them. Notebooks replay their cassettes
(`AIKIT_CACHE=replay`) in a real `aikit` kernel; the playground talks to the loopback echo
server through an `aikit.toml` profile. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

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


def _open_and_run_all(browser: Any, lab: dict[str, Any], notebook: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # `reset`: a fresh workspace, so no tab of an earlier test is restored beside this notebook.
    page.goto(f"{lab['base']}/lab/tree/{notebook}?reset&token={lab['token']}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    expect_one = playwright_api.expect(page.locator(".jp-NotebookPanel"))
    expect_one.to_have_count(1, timeout=30_000)
    page.wait_for_selector(
        ".jp-NotebookPanel-toolbar .jp-KernelStatus, .jp-Toolbar-kernelName", timeout=60_000
    )
    expect = playwright_api.expect
    expect(page.locator(".jp-NotebookPanel-toolbar")).to_contain_text(
        "Python (aikit)", timeout=60_000
    )
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator('[data-command="runmenu:run-all"]').click()
    return page


def test_prompting_notebook_runs_all_cells_and_renders(browser: Any, lab: dict[str, Any]) -> None:
    page = _open_and_run_all(browser, lab, "01_prompting.ipynb")
    expect = playwright_api.expect
    outputs = page.locator(".jp-NotebookPanel .jp-OutputArea-output")
    expect(outputs.filter(has_text="accuracy = ")).to_have_count(1, timeout=120_000)
    expect(outputs.filter(has_text="I HAVE BEEN PWNED")).to_have_count(1)
    pivot = outputs.filter(has_text="instructed").filter(has=page.locator("table"))
    expect(pivot).to_have_count(1)  # the accuracy table rendered as HTML
    expect(pivot.locator("td").first).to_have_text("0.958")
    errors = page.locator(
        '.jp-NotebookPanel .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    )
    assert errors.count() == 0
    assert "Traceback" not in page.locator(".jp-NotebookPanel").inner_text()
    page.screenshot(path=str(ARTIFACTS / "01_prompting.png"), full_page=False)
    page.close()


def test_playground_answers_a_typed_prompt(browser: Any, lab: dict[str, Any]) -> None:
    page = _open_and_run_all(browser, lab, "01_prompting.ipynb")
    expect = playwright_api.expect
    widget = page.locator(".jp-NotebookPanel .widget-vbox").last
    expect(widget).to_be_visible(timeout=120_000)
    widget.scroll_into_view_if_needed()
    widget.locator("select").select_option("echo")
    prompt = widget.locator("textarea").nth(1)
    prompt.fill("Which planet is largest?")
    widget.get_by_role("button", name="Run").click()
    expect(widget).to_contain_text("echo: Which planet is largest?", timeout=60_000)
    expect(widget).to_contain_text("from cache")
    assert lab["echo"].requests[-1]["messages"][-1]["content"] == "Which planet is largest?"
    widget.screenshot(path=str(ARTIFACTS / "playground.png"))
    page.close()


def test_eval_explorer_filter_changes_the_table(browser: Any, lab: dict[str, Any]) -> None:
    page = _open_and_run_all(browser, lab, "03_evals.ipynb")
    expect = playwright_api.expect
    explorer = page.locator(".jp-NotebookPanel .widget-vbox").filter(
        has=page.locator("option", has_text="regressed")
    )
    try:
        expect(explorer).to_have_count(1, timeout=120_000)
    except AssertionError:
        page.screenshot(path=str(ARTIFACTS / "explorer-failure.png"), full_page=True)
        raise
    explorer.scroll_into_view_if_needed()
    table, caption = explorer.locator("table").first, explorer.locator("p").first
    expect(caption).to_have_text(re.compile(r"^48 samples · page 1 of 5"), timeout=60_000)
    assert table.locator("tr").count() == 11  # a header and a page of 10
    explorer.locator("select").nth(1).select_option(label="regressed")
    expect(caption).to_have_text(re.compile(r"^[1-9] samples? · page 1 of 1"), timeout=30_000)
    shown = int(caption.inner_text().split()[0])
    assert table.locator("tr").count() == shown + 1
    expect(table).to_contain_text("sent-06")  # the regression the notebook reports
    explorer.screenshot(path=str(ARTIFACTS / "explorer.png"))
    page.close()
