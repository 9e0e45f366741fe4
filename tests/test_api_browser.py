"""`aikit api notebooks/02_rag.ipynb` as a person meets it: `/docs` in headless Chromium, "Try it
out" on `POST /ask`, and the answer on the page.

Needs Debian's chromium at /usr/bin/chromium and the `playwright` package (skipped without
them). The service replays 02_rag's cassette (`AIKIT_CACHE=replay`), so no model runs; the
embedding model builds the index at start-up as it would in production. A screenshot goes to
test-artifacts/api-docs.png.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

from aikit.api import serving

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
QUESTION = "How much money do I get to set up my home office?"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
    ),
]
playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("fastapi_offline", reason="aikit api needs `pip install aikit[api]`")
pytest.importorskip("lancedb", reason="02_rag needs `pip install aikit[rag]`")


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in [k for k in os.environ if k.startswith(("AIKIT_", "OPENAI_"))]:
        monkeypatch.delenv(name)  # the service as a fresh shell starts it
    env = {
        "AIKIT_HOME": str(tmp_path / "home"),
        "AIKIT_CACHE": "replay",
        "AIKIT_CASSETTES": str(ROOT / "notebooks" / "cassettes" / "02_rag.jsonl"),  # its own
    }
    notebook = ROOT / "notebooks" / "02_rag.ipynb"
    with serving(notebook, env=env, cwd=ROOT, startup_timeout_s=240) as api:
        yield api.url


@pytest.mark.timeout(600)
def test_docs_try_it_out_on_ask_shows_the_answer(service: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        outside: list[str] = []
        page.on(
            "request",
            lambda r: outside.append(r.url) if not r.url.startswith(service) else None,
        )
        expect = playwright_api.expect
        try:
            page.goto(f"{service}/docs")
            operation = page.locator("#operations-ask-ask_call")
            expect(operation).to_be_visible(timeout=60_000)
            operation.locator(".opblock-summary").click()
            operation.get_by_role("button", name="Try it out").click()
            body = operation.locator("textarea.body-param__text")
            body.fill(f'{{"question": "{QUESTION}"}}')
            operation.get_by_role("button", name="Execute").click()
            result = operation.locator(".responses-table.live-responses-table")
            # 02's recorded answer (wrong, and marked so: 02 §5): €150, cited on the pricing page.
            expect(result).to_contain_text("company/sales/pricing.md", timeout=120_000)
            expect(result).to_contain_text('"found": true')
            expect(result).to_contain_text('"supported": false')
            expect(result.locator("tr.response td.response-col_status")).to_have_text("200")
            operation.screenshot(path=str(ARTIFACTS / "api-docs.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "api-docs-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert outside == [], f"/docs fetched from outside the service: {outside}"
