"""The prompt playground, driven from code against the loopback OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

from openai_server import OpenAIServer

from aikit.widgets import playground


def test_playground_runs_a_prompt_and_shows_the_accounting(remote: OpenAIServer) -> None:
    pg = playground()
    assert list(pg.choices) == ["default"]
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
    assert "<th>from cache</th><td>no</td>" in html
    pg.run()
    assert "<th>from cache</th><td>yes</td>" in pg.output.value
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
    assert "<th>A</th><th>B</th>" in pg.output.value


def test_profiles_are_the_model_choices_and_headless_render_is_static(
    remote: OpenAIServer, tmp_path: Path
) -> None:
    config = tmp_path / "aikit.toml"
    config.write_text(
        f'[profiles.team]\nprovider = "openai"\nbase_url = "{remote.base_url}"\n'
        'model = "gpt-4o-mini"\napi_key_env = "OPENAI_API_KEY"\n'
    )
    pg = playground(config=str(config))
    assert list(pg.choices) == ["default", "team"]
    pg.model.value = "team"
    pg.user.value = "priced"
    [reply] = pg.run()
    assert reply.model == "gpt-4o-mini" and reply.cost is not None and reply.cost > 0
    bundle = pg._repr_mimebundle_()
    assert bundle["text/plain"].startswith("Prompt playground: model team (openai · gpt-4o-mini)")
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_empty_prompt_says_so_without_calling(remote: OpenAIServer) -> None:
    pg = playground()
    assert pg.run() == []
    assert "Type a prompt first" in pg.output.value and remote.requests == []
