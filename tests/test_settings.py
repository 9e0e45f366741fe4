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
        (
            "AIKIT_TIMEOUT",
            "soon",
            "AIKIT_TIMEOUT='soon' is not a number; set a number of seconds > 0 such as 120",
        ),
        (
            "AIKIT_TIMEOUT",
            "-1",
            "AIKIT_TIMEOUT='-1' is negative; set a number of seconds > 0 such as 120",
        ),
        ("AIKIT_TIMEOUT", "0", "AIKIT_TIMEOUT='0' is zero; set a number of seconds > 0"),
        ("AIKIT_TIMEOUT", "nan", "AIKIT_TIMEOUT='nan' is not a finite number"),
        ("AIKIT_TIMEOUT", "inf", "AIKIT_TIMEOUT='inf' is not a finite number"),
        (
            "AIKIT_MAX_RETRIES",
            "2.5",
            "AIKIT_MAX_RETRIES='2.5' is not a whole number; set a whole number >= 0 such as 2",
        ),
        ("AIKIT_MAX_RETRIES", "-3", "AIKIT_MAX_RETRIES='-3' is negative"),
        (
            "AIKIT_SERVER_IDLE_S",
            "soon",
            "AIKIT_SERVER_IDLE_S='soon' is not a number; set a number of seconds >= 0 such as 900",
        ),
        ("AIKIT_SERVER_IDLE_S", "-5", "AIKIT_SERVER_IDLE_S='-5' is negative"),
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
    with pytest.raises(
        ConfigError, match=r"profile 'b' is not in \S+/aikit\.toml; known profiles: a"
    ):
        Settings.resolve(profile="b")


# --- settings files belong to the project, not to the working directory (issue 14, item 1) ---


def _project(tmp_path: Path) -> Path:
    """A project: a root marker (pyproject.toml), notebooks two folders down."""
    root = tmp_path / "proj"
    (root / "notebooks" / "deep").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    return root


def test_dotenv_at_the_root_is_found_from_a_sub_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    (root / ".env").write_text("AIKIT_MODEL=from-root\n")
    monkeypatch.chdir(root / "notebooks" / "deep")
    s = Settings.resolve()
    assert s.model == "from-root"
    assert s.files == ((root / ".env").resolve(),)
    assert s.project_root == root.resolve()


def test_the_search_stops_at_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    (tmp_path / ".env").write_text("AIKIT_MODEL=above-the-root\n")  # not this project's
    (tmp_path / "aikit.toml").write_text('[profiles.team]\nmodel = "above"\n')
    monkeypatch.chdir(root / "notebooks")
    s = Settings.resolve()
    assert s.model == "gemma-3-270m" and s.files == ()
    with pytest.raises(ConfigError, match=r"profile 'team' is not defined: no aikit\.toml in"):
        Settings.resolve(profile="team")


def test_no_project_root_reads_only_the_start_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("AIKIT_MODEL=parent\n")  # tmp_path has no root marker
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert Settings.resolve().model == "gemma-3-270m"
    monkeypatch.chdir(tmp_path)
    assert Settings.resolve().model == "parent"


def test_the_nearest_file_of_each_name_wins_and_they_combine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    # .env at the root picks the profile and holds its key; aikit.toml defines the profile
    (root / ".env").write_text("AIKIT_PROFILE=team\nTEAM_KEY=k-from-dotenv\nAIKIT_TIMEOUT=9\n")
    (root / "aikit.toml").write_text(
        '[profiles.team]\nprovider = "openai"\nmodel = "team-model"\napi_key_env = "TEAM_KEY"\n'
    )
    monkeypatch.chdir(root / "notebooks" / "deep")
    s = Settings.resolve()
    assert (s.provider, s.model, s.api_key, s.timeout) == (
        "openai",
        "team-model",
        "k-from-dotenv",
        9.0,
    )
    assert s.files == ((root / ".env").resolve(), (root / "aikit.toml").resolve())
    (root / "notebooks" / ".env").write_text("AIKIT_TIMEOUT=3\n")  # a nearer .env wins whole
    s = Settings.resolve()
    assert (s.model, s.timeout) == ("gemma-3-270m", 3.0)
    monkeypatch.setenv("AIKIT_TIMEOUT", "5")  # the environment beats any .env
    monkeypatch.setenv("AIKIT_PROFILE", "team")
    monkeypatch.setenv("TEAM_KEY", "k-from-env")
    s = Settings.resolve()
    assert (s.model, s.timeout, s.api_key) == ("team-model", 5.0, "k-from-env")
    # an aikit.toml in a sub-folder makes it a project of its own: the search stops there
    (root / "notebooks" / "aikit.toml").write_text('[profiles.team]\nmodel = "sub-model"\n')
    s = Settings.resolve()
    assert (s.model, s.timeout, s.project_root) == ("sub-model", 5.0, (root / "notebooks"))


def test_the_notebook_folder_and_project_root_beat_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    (root / ".env").write_text("AIKIT_MODEL=from-project\n")
    run_folder = tmp_path / "runs" / "r1"  # a kernel under `aikit run` starts here
    run_folder.mkdir(parents=True)
    monkeypatch.chdir(run_folder)
    assert Settings.resolve().model == "gemma-3-270m"
    monkeypatch.setenv("AIKIT_NOTEBOOK_DIR", str(root / "notebooks" / "deep"))
    assert Settings.resolve().model == "from-project"
    monkeypatch.delenv("AIKIT_NOTEBOOK_DIR")  # a worker's scratch: the root aikit passed on
    monkeypatch.setenv("AIKIT_PROJECT_ROOT", str(root))
    assert Settings.resolve().model == "from-project"


def test_a_malformed_aikit_toml_is_an_error_not_a_file_read() -> None:
    Path("pyproject.toml").write_text("[project]\nname = 'x'\n")
    Path("aikit.toml").write_text("[profiles\n")
    with pytest.raises(ConfigError) as info:
        Settings.resolve()  # no profile chosen: the file is still checked, not listed as read
    assert str(info.value).startswith(f"{Path('aikit.toml').resolve()} is not valid TOML (")
    assert str(info.value).endswith("; fix the file") and "\n" not in str(info.value)


def test_a_dotenv_that_is_not_utf8_names_the_file() -> None:
    Path("pyproject.toml").write_text("[project]\nname = 'x'\n")
    Path(".env").write_bytes(b"AIKIT_MODEL=caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        Settings.resolve()
    assert str(info.value) == (
        f"settings file {Path('.env').resolve()} is not UTF-8 text (byte 15: invalid"
        " continuation byte); save it as UTF-8, one NAME=value a line"
    )
