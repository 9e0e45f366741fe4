"""The prompt playground, driven from code against the loopback OpenAI-compatible server, and
what the widgets show in JupyterLab (static text, labels, the explorer's rows, stable ids)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import ipywidgets
import pytest
from conftest import ROOT
from openai_server import OpenAIServer

from aikit.widgets import explore, playground


def test_playground_runs_a_prompt_and_shows_the_accounting(remote: OpenAIServer) -> None:
    pg = playground()
    assert list(pg.choices) == ["default", "local:gemma-3-270m", "local:smollm2-135m-instruct"]
    pg.system.value = "Be brief."
    pg.user.value = "Say hello"
    pg.temperature.value = 0.3
    pg.max_tokens.value = 20
    pg.run_button.click()  # what a person's click does
    [reply] = pg.replies
    assert reply.text == "echo: Say hello"
    sent = remote.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (sent["temperature"], sent["max_tokens"]) == (0.3, 20)
    html = pg.output.value
    assert "echo: Say hello" in html and "4 in / 3 out" in html  # the test server counts words
    assert "unknown" in html  # test-model has no price
    assert re.search(r">from cache</th><td [^>]*>no</td>", html)
    pg.run()
    assert re.search(r">from cache</th><td [^>]*>yes</td>", pg.output.value)
    assert len(remote.requests) == 1


def test_compare_mode_shows_two_prompts_side_by_side(remote: OpenAIServer) -> None:
    pg = playground()
    pg.user.value = "first"
    pg.user_b.value = "second"
    assert pg.user_b.layout.display == "none"
    assert {pg.model.layout.display, pg.system.layout.display, pg.user.layout.display} == {None}
    pg.compare.value = True
    assert pg.user_b.layout.display == ""
    replies = pg.run()
    assert [r.text for r in replies] == ["echo: first", "echo: second"]
    assert re.search(r">A</th><th [^>]*>B</th>", pg.output.value)


def test_profiles_are_the_model_choices_and_headless_render_is_static(
    remote: OpenAIServer, tmp_path: Path
) -> None:
    config = tmp_path / "aikit.toml"
    config.write_text(
        f'[profiles.team]\nprovider = "openai"\nbase_url = "{remote.base_url}"\n'
        'model = "gpt-4o-mini"\napi_key_env = "OPENAI_API_KEY"\n'
    )
    pg = playground(config=str(config))
    assert list(pg.choices) == [
        "default",
        "local:gemma-3-270m",
        "local:smollm2-135m-instruct",
        "team",
    ]
    pg.model.value = "team"
    pg.user.value = "priced"
    [reply] = pg.run()
    assert reply.model == "gpt-4o-mini" and reply.cost is not None and reply.cost > 0
    bundle = pg._repr_mimebundle_()
    assert bundle["text/plain"].startswith("Prompt playground: model team (openai · gpt-4o-mini)")
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_the_playground_finds_the_projects_profiles_from_a_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JupyterLab's kernel runs in notebooks/: the profiles of the project root's aikit.toml
    are the playground's model choices, not only "default"."""
    (tmp_path / "aikit.toml").write_text(
        '[profiles.echo]\nprovider = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'model = "test-model"\n'
    )
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    for name in ("AIKIT_PROJECT_ROOT", "AIKIT_NOTEBOOK_DIR", "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
    choices = playground().choices
    assert list(choices) == ["default", "local:smollm2-135m-instruct", "echo"]  # default: gemma
    assert (
        choices["local:smollm2-135m-instruct"].provider,
        choices["local:smollm2-135m-instruct"].model,
    ) == ("local", "smollm2-135m-instruct")


def test_empty_prompt_says_so_without_calling(remote: OpenAIServer) -> None:
    pg = playground()
    assert pg.run() == []
    assert "Type a prompt first" in pg.output.value and remote.requests == []


# -- what JupyterLab shows: static text, labels, explorer rows, stable ids ------------------
def _result(scores: dict[str, tuple[float, float]], name: str) -> Any:
    from aikit import evals

    data = [{"id": k, "input": f"question {k}", "expected": "1"} for k in scores]
    metrics = {"exact": lambda o, e: o[0], "fuzzy": lambda o, e: o[1]}
    return evals.evaluate(lambda k: scores[k[len("question ") :]], data, metrics, name=name)


def test_saved_static_text_says_what_the_widget_does_and_to_run_the_cell(
    remote: OpenAIServer,
) -> None:
    # A reader who opens the notebook in JupyterLab sees this text until the cell runs.
    explorer = explore(_result({"x": (1.0, 1.0)}, "demo"))
    for widget in (playground(), explorer):
        text = widget._repr_mimebundle_()["text/plain"]
        assert "open the notebook in JupyterLab" not in text
        assert "run this cell to " in text
    assert "1 sample," in explorer.summary()  # not "1 samples"


def test_playground_labels_fit_and_the_models_name_each_profile(
    remote: OpenAIServer, tmp_path: Path
) -> None:
    config = tmp_path / "aikit.toml"
    config.write_text(
        f'[profiles.echo]\nprovider = "openai"\nbase_url = "{remote.base_url}"\n'
        'model = "test-model"\napi_key_env = "OPENAI_API_KEY"\n'
    )
    pg = playground(config=str(config))
    labels = [label for label, _ in pg.model.options]
    assert labels == [
        "default (openai · test-model)",
        "local:gemma-3-270m (local · gemma-3-270m)",
        "local:smollm2-135m-instruct (local · smollm2-135m-instruct)",
        "echo (openai · test-model)",
    ]
    pg.model.value = "echo"  # the value stays the profile's name
    assert pg.summary().startswith("Prompt playground: model echo (openai · test-model);")
    # "initial": the label is as wide as its text ("temperature", not "temperat…").
    assert pg.temperature.style.description_width == "initial"
    assert pg.max_tokens.style.description_width == "initial"


def test_explorer_starts_on_the_first_sample_and_a_clicked_row_shows_it() -> None:
    view = explore(_result({f"s{i}": (float(i % 2), 1.0) for i in range(5)}, "demo"))
    assert view.sample.value == "s0" and "question s0" in view.detail.value
    buttons = [c for c in view.table.children if isinstance(c, ipywidgets.Button)]
    assert [b.description for b in buttons] == ["s0", "s1", "s2", "s3", "s4"]
    assert all(b.layout.width == "max-content" for b in buttons)  # ids do not wrap
    buttons[3].click()  # what a person's click on the row does
    assert view.sample.value == "s3" and "question s3" in view.detail.value
    assert [b.button_style for b in buttons] == ["", "", "", "info", ""]  # the row is marked
    view.status.value = "passed"  # s1 and s3 pass "exact"; s3 stays selected
    assert view.sample.value == "s3" and "2 samples · page 1 of 1" in view.caption.value
    view.status.value = "failed"  # s3 is gone: the first failed sample is shown
    assert view.sample.value == "s0"
    view.metric.value = "fuzzy"  # every sample passes "fuzzy": none failed, none shown
    assert view.caption.value.startswith("<p>0 samples")
    assert view.sample.value is None and view.detail.value == ""
    one = explore(_result({"x": (1.0, 1.0)}, "one"))
    assert one.caption.value.startswith("<p>1 sample · page 1 of 1")


def test_explorer_static_text_counts_regressions_as_its_filter_does() -> None:
    from aikit import evals

    # x regresses on both metrics: 2 (metric, id) rows, but 1 sample per metric's filter.
    a = _result({"x": (1.0, 1.0), "y": (1.0, 0.0), "z": (0.0, 0.0)}, "a")
    b = _result({"x": (0.0, 0.0), "y": (1.0, 0.0), "z": (1.0, 0.0)}, "b")
    comparison = evals.compare(a, b)
    assert len(comparison.regressions) == 2
    view = explore(comparison)
    view.status.value = "regressed"
    per_metric = {}
    for metric in ("exact", "fuzzy"):
        view.metric.value = metric
        per_metric[metric] = len(view.rows())
    assert per_metric == {"exact": 1, "fuzzy": 1}
    assert "3 paired samples, regressed per metric: exact 1, fuzzy 1;" in view.summary()


def test_a_fresh_kernel_gives_the_saved_widget_ids_again(isolated: Path) -> None:
    # A reader who runs a saved notebook again gets the same output ids: no git changes.
    script = (
        "from aikit.widgets import playground\n"
        "ids = [playground()._repr_mimebundle_()['application/vnd.jupyter.widget-view+json']"
        "['model_id'] for _ in range(2)]\n"
        "print(*ids)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIKIT_HOME": str(isolated)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs[0] == runs[1]  # the same in two fresh processes
    assert runs[0][0] != runs[0][1]  # and unique within one


def test_rerecord_drops_widget_state_and_lessons_keep_none(tmp_path: Path) -> None:
    from aikit.runner.cassettes import _strip_run_metadata

    saved = tmp_path / "nb.ipynb"
    state = {"application/vnd.jupyter.widget-state+json": {"state": {"1f": {}}}}
    saved.write_text(json.dumps({"metadata": {"widgets": state, "kernelspec": {}}, "cells": []}))
    _strip_run_metadata(saved)
    assert json.loads(saved.read_text())["metadata"] == {"kernelspec": {}}
    for lesson in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert "widgets" not in json.loads(lesson.read_text())["metadata"], lesson.name
