"""One request log for many machines: `AIKIT_REQUEST_LOG=postgresql://...` on a real
PostgreSQL 15 server (`postgres_server.py`), two `aikit api` processes (real uvicorn) writing
to it at once, and the readers giving the same frames as from SQLite."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pandas as pd
import pytest
from postgres_server import PostgresServer, available

import aikit
from aikit._scrub import Scrubber
from aikit.api import ApiClient, live_scores, serving
from aikit.api._log import RequestLog, Row, ScoreRow
from aikit.api._logdb import target_of
from aikit.errors import ConfigError

pytest.importorskip("fastapi_offline", reason="aikit api needs `pip install aikit[api]`")
psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL log needs `pip install aikit[api]`")
pytestmark = pytest.mark.skipif(
    not available(), reason="needs Debian's postgresql package (.ci/run installs it)"
)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def _row(row_id: str, request_id: str, when: float, status: int, text: str) -> Row:
    return Row(
        row_id=row_id,
        request_id=request_id,
        time=when,
        endpoint="ask",
        kind="call",
        status=status,
        latency_s=0.25,
        model="m1",
        calls=1,
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=None,
        cached=True,
        error=None,
        input=text,
        output='{"text": "ok"}',
        worker=42,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        host="box-1",
    )


def test_the_log_reads_the_same_from_postgresql_and_sqlite(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.create_database("same")
    secret = "tok-5ecr3t-value-0123456789"
    for target in (target_of(url, tmp_path), target_of(None, tmp_path)):
        log = RequestLog(target, Scrubber({"API_TOKEN": secret}))
        log.write(_row("r1", "q1", 1000.0, 0, f'{{"question": "with {secret}"}}'))  # in flight
        log.write(_row("r1", "q1", 1000.0, 200, f'{{"question": "with {secret}"}}'))  # done
        log.write(_row("r2", "q2", 1001.0, 200, '{"question": "two\\u0000"}'))
        log.write_score(ScoreRow("r1", "q1", 1002.0, "ask", "m1", "faithfulness", 0.5, secret))
        log.write_score(ScoreRow("r2", "q2", 1003.0, "ask", "m1", "faithfulness", None, None))
        log.close()
    on_pg, on_sqlite = aikit.requests(log=url), aikit.requests(home=tmp_path)
    assert list(on_pg["status"]) == [200, 200] and list(on_pg["request_id"]) == ["q1", "q2"]
    assert list(on_pg["scores"]) == [{"faithfulness": 0.5}, {"faithfulness": None}]
    assert on_pg["input"].iloc[0] == '{"question": "with secret:API_TOKEN"}'
    assert on_pg["trace_id"].iloc[0] == "0af7651916cd43dd8448eb211c80319c"
    assert on_pg["cached"].iloc[0] is True
    assert on_pg.to_json(date_format="iso") == on_sqlite.to_json(date_format="iso")
    scores_pg, scores_sqlite = aikit.api.scores(log=url), aikit.api.scores(home=tmp_path)
    assert scores_pg.to_json(date_format="iso") == scores_sqlite.to_json(date_format="iso")
    assert scores_pg["detail"].iloc[0] == "secret:API_TOKEN" and pd.isna(scores_pg["detail"][1])
    live = live_scores("faithfulness", log=url)
    assert list(live[["endpoint", "model", "mean", "n", "unscored"]].itertuples(index=False)) == [
        ("ask", "m1", 0.5, 1, 1)
    ]
    wrong = url.replace(postgres.password, "not-the-password")
    with pytest.raises(ConfigError) as error:
        aikit.requests(log=wrong)
    message = str(error.value)
    assert "password authentication failed" in message and "not-the-password" not in message
    assert ":***@127.0.0.1" in message and "\n" not in message


NOTEBOOK = """\
import asyncio

import aikit


@aikit.endpoint
async def echo(text: str) -> str:
    await asyncio.sleep(0.01)
    return text
"""


def _served_log(url: str, expected: int) -> Any:
    deadline = time.monotonic() + 60
    while True:
        frame = aikit.requests(log=url)
        if (len(frame) >= expected and not (frame["status"] == 0).any()) or (
            time.monotonic() > deadline
        ):
            return frame
        time.sleep(0.1)


def test_two_servers_write_one_postgresql_log_at_once(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.create_database("shared")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK)]
    notebook = tmp_path / "service.ipynb"
    nbformat.write(nb, notebook)
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(2) as starting:
        managers = [
            serving(notebook, env={"AIKIT_HOME": str(tmp_path / f"h{i}"), "AIKIT_REQUEST_LOG": url})
            for i in range(2)
        ]
        futures = [starting.submit(m.__enter__) for m in managers]  # both migrate at once
        for manager in managers:
            stack.push(manager.__exit__)
        servers: list[ApiClient] = [f.result() for f in futures]

        def call(i: int) -> httpx.Response:
            server = servers[i % 2]
            return server.post("/echo", json={"text": f"t{i}"}, headers={"X-Request-ID": f"p{i}"})

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(call, range(300)))
        assert [r.status_code for r in responses] == [200] * 300
        log = _served_log(url, 300)
        outputs = "".join(s.output() for s in servers)
        pids = {s.process.pid for s in servers}
    # Every request is exactly one row, completed; none lost, none doubled.
    assert len(log) == 300 and log["request_id"].is_unique
    assert set(log["request_id"]) == {f"p{i}" for i in range(300)}
    assert set(log["status"]) == {200} and set(log["worker"]) == pids
    assert log["host"].nunique() == 1
    with psycopg.connect(url) as conn:
        applied = conn.execute("SELECT component, version, pid FROM aikit_schema").fetchall()
        rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    assert rows == 300
    assert [(c, v) for c, v, _ in applied] == [("requests", 1)] and applied[0][2] in pids
    assert postgres.password not in outputs
