from __future__ import annotations

from pathlib import Path

import pytest

from aikit.errors import ConfigError
from aikit.settings import Settings, configure, get_settings


def test_defaults(isolated: Path) -> None:
    s = Settings.resolve()
    assert (s.provider, s.model, s.cache) == ("local", "gemma-3-270m", "on")
    assert s.home == isolated
    assert s.cache_path == isolated / "cache.sqlite"
    assert s.base_url is None and s.api_key is None


def test_argument_beats_env_beats_dotenv_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("AIKIT_MODEL=from-dotenv\nAIKIT_CACHE=off\nAIKIT_TIMEOUT=7\n")
    assert Settings.resolve().model == "from-dotenv"
    assert Settings.resolve().timeout == 7.0
    monkeypatch.setenv("AIKIT_MODEL", "from-env")
    s = Settings.resolve()
    assert (s.model, s.cache) == ("from-env", "off")
    assert Settings.resolve(model="from-arg").model == "from-arg"


def test_openai_provider_defaults_to_openai_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIKIT_PROVIDER", "OpenAI")
    s = Settings.resolve()
    assert (s.provider, s.base_url, s.model) == (
        "openai",
        "https://api.openai.com/v1",
        "gpt-4o-mini",
    )


def test_frozen_and_key_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-visible-nowhere")
    s = Settings.resolve()
    assert s.api_key == "sk-visible-nowhere"
    assert "sk-visible-nowhere" not in repr(s)
    with pytest.raises(AttributeError):
        s.model = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (
            "AIKIT_CACHE",
            "bogus",
            "AIKIT_CACHE='bogus' is not a cache mode; use one of: on, off, replay, record",
        ),
        ("AIKIT_PROVIDER", "azure", "AIKIT_PROVIDER='azure' is not a provider"),
        (
            "OPENAI_BASE_URL",
            "localhost:8000",
            "OPENAI_BASE_URL='localhost:8000' is not an http(s) URL",
        ),
        ("AIKIT_TIMEOUT", "soon", "AIKIT_TIMEOUT='soon' is not a valid float"),
    ],
)
def test_bad_values_name_value_and_fix(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        Settings.resolve()
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'modle'"):
        Settings.resolve(modle="x")


def test_resolved_once_until_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("AIKIT_MODEL", "changed")
    assert get_settings() is first
    assert configure().model == "changed"
    assert get_settings().model == "changed"


def test_profiles_from_aikit_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    from aikit.settings import profiles

    Path("aikit.toml").write_text(
        '[profiles.ollama]\nprovider = "openai"\nbase_url = "http://127.0.0.1:11434/v1"\n'
        'model = "llama3.2"\napi_key_env = "OLLAMA_KEY"\n'
    )
    monkeypatch.setenv("OLLAMA_KEY", "k-123")
    monkeypatch.setenv("AIKIT_MODEL", "from-env")
    found = profiles()
    assert list(found) == ["default", "ollama"]
    assert found["default"].model == "from-env"
    ollama = found["ollama"]
    assert (ollama.provider, ollama.model, ollama.base_url, ollama.api_key) == (
        "openai",
        "llama3.2",
        "http://127.0.0.1:11434/v1",
        "k-123",
    )
    monkeypatch.setenv("AIKIT_PROFILE", "ollama")
    assert Settings.resolve().model == "llama3.2"  # a chosen profile beats the environment
    assert Settings.resolve(model="arg").model == "arg"  # an argument beats the profile


def test_unknown_profile_and_bad_keys_are_named() -> None:
    Path("aikit.toml").write_text('[profiles.a]\nmodle = "x"\n')
    with pytest.raises(ConfigError, match=r"profiles.a.modle is not a profile key"):
        Settings.resolve(profile="a")
    Path("aikit.toml").write_text('[profiles.a]\nmodel = "x"\n')
    with pytest.raises(ConfigError, match=r"profile 'b' is not in aikit\.toml; known profiles: a"):
        Settings.resolve(profile="b")
