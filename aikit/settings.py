"""One frozen `Settings`, resolved once: argument > profile > environment > `.env` > default.

`.env` and `aikit.toml` belong to the project, not to the working directory: each is looked for
from the running notebook's folder (`AIKIT_NOTEBOOK_DIR`, set by `aikit run` and `aikit api`, or
JupyterLab's session path), else the working directory, up to the project root (the first folder
holding `aikit.toml`, `pyproject.toml` or `.git`); the nearest file of each name wins. Every
kernel aikit starts gets `AIKIT_PROJECT_ROOT`, so a run folder or a worker's scratch folder
outside the project still finds them. `Settings.files` (and `aikit doctor`) say which were read.

A profile is a named table in `aikit.toml`, chosen with `AIKIT_PROFILE` (environment or `.env`)
or `configure(profile=...)`; `api_key_env` names the variable holding its key (environment or
`.env`):

    [profiles.openai]
    provider = "openai"
    model = "gpt-4o-mini"
    api_key_env = "OPENAI_API_KEY"

    [profiles.ollama]
    provider = "openai"
    base_url = "http://127.0.0.1:11434/v1"
    model = "llama3.2"

Environment variables (the same names may stand in the project's `.env` file):

- `AIKIT_HOME`: state directory (response store, local server discovery file); `~/.aikit`.
- `AIKIT_PROVIDER`: `local` (the embedded model, default) or `openai` (any OpenAI-compatible
  endpoint: OpenAI, Azure, Ollama, vLLM, LM Studio ...).
- `AIKIT_MODEL`: model name; `gemma-3-270m` for `local`, `gpt-4o-mini` for `openai`.
- `AIKIT_CACHE`: response store mode, `on` (default) | `off` | `replay` | `record`.
- `AIKIT_CACHE_PATH`: the response store file; `$AIKIT_HOME/cache.sqlite`.
- `AIKIT_CASSETTES`: where `replay` also looks for recorded answers: JSONL cassette files or
  folders of them, separated by `os.pathsep` (the first that holds a request answers it);
  `cassettes` and `notebooks/cassettes` under the working directory, and the project root's
  `notebooks/cassettes` (so a notebook finds its cassette from the repo root, from
  `notebooks/` and from anywhere in the project).
- `AIKIT_TIMEOUT`: seconds before a model call times out; 120.
- `AIKIT_MAX_RETRIES`: retries of the openai SDK's own retry loop; 2.
- `AIKIT_REQUEST_LOG`: where `aikit api` logs requests: a path or `sqlite:///PATH` (SQLite), or
  `postgresql://USER:PASSWORD@HOST/DB` (one log for many machines); `$AIKIT_HOME/requests.sqlite`.
- `OPENAI_BASE_URL`: endpoint for provider `openai`; `https://api.openai.com/v1`.
- `OPENAI_API_KEY`: key for provider `openai`; never written anywhere by aikit.
- `AIKIT_PROFILE`: a profile of `aikit.toml` to use.
- `AIKIT_PROJECT_ROOT`: the project root (where the search for `.env` and `aikit.toml` stops);
  set by aikit for the kernels it starts, found from the markers otherwise.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from dotenv import dotenv_values

from aikit._userfile import read_text
from aikit.errors import ConfigError

Provider = Literal["local", "openai"]
CacheMode = Literal["on", "off", "replay", "record"]

PROVIDERS: tuple[str, ...] = ("local", "openai")
CACHE_MODES: tuple[str, ...] = ("on", "off", "replay", "record")
# The model each provider uses unless AIKIT_MODEL says otherwise (local: `aikit.local.CHAT_MODEL`).
DEFAULT_MODELS: dict[str, str] = {"local": "gemma-3-270m", "openai": "gpt-4o-mini"}
OPENAI_URL = "https://api.openai.com/v1"
# The base URL each provider uses unless OPENAI_BASE_URL says otherwise (local: its own server).
DEFAULT_URLS: dict[str, str | None] = {"local": None, "openai": OPENAI_URL}
PROFILES_FILE = "aikit.toml"
DOTENV_FILE = ".env"
PROJECT_ROOT_ENV = "AIKIT_PROJECT_ROOT"
NOTEBOOK_DIR_ENV = "AIKIT_NOTEBOOK_DIR"
IDLE_ENV = "AIKIT_SERVER_IDLE_S"  # read by the embedded model's server; checked here
# A folder holding one of these is a project root: the search for settings files stops there.
PROJECT_MARKERS = ("aikit.toml", "pyproject.toml", ".git")
PROFILE_KEYS = ("provider", "model", "base_url", "api_key_env", "cache", "timeout", "max_retries")

# Settings field -> environment variable.
ENV_NAMES: dict[str, str] = {
    "home": "AIKIT_HOME",
    "provider": "AIKIT_PROVIDER",
    "model": "AIKIT_MODEL",
    "cache": "AIKIT_CACHE",
    "cache_path": "AIKIT_CACHE_PATH",
    "cassettes": "AIKIT_CASSETTES",
    "timeout": "AIKIT_TIMEOUT",
    "max_retries": "AIKIT_MAX_RETRIES",
    "request_log": "AIKIT_REQUEST_LOG",
    "base_url": "OPENAI_BASE_URL",
    "api_key": "OPENAI_API_KEY",
}


class _Find:
    """The default of `dotenv`/`config`: find the file in the project (see the module doc)."""

    def __repr__(self) -> str:
        return "FIND"


FIND = _Find()


@dataclass(frozen=True)
class ProjectFiles:
    """The project root and the settings files found for a folder (None: not found)."""

    root: Path | None
    dotenv: Path | None
    config: Path | None


def start_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the search for settings files starts: the running notebook's folder when aikit or
    JupyterLab says which it is (`AIKIT_NOTEBOOK_DIR`, `JPY_SESSION_NAME`), else the cwd."""
    env = os.environ if environ is None else environ
    given = env.get(NOTEBOOK_DIR_ENV)
    if given and Path(given).is_dir():
        return Path(given).resolve()
    session = env.get("JPY_SESSION_NAME")
    if session and Path(session).is_file():
        return Path(session).resolve().parent
    return Path.cwd().resolve()


def project_root(start: str | Path) -> Path | None:
    """The first folder from `start` upward holding `aikit.toml`, `pyproject.toml` or `.git`."""
    folder = Path(start).resolve()
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return None


def find_project_files(
    start: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> ProjectFiles:
    """The nearest `.env` and `aikit.toml` from `start` (default `start_dir()`) up to the
    project root. `AIKIT_PROJECT_ROOT` bounds the search; a start folder outside that root
    (a run folder, a Dask worker's scratch) searches the root itself. Without any root, only
    the start folder is searched (never a stray `~/.env`)."""
    env = os.environ if environ is None else environ
    begin = Path(start).resolve() if start is not None else start_dir(env)
    hint = Path(env[PROJECT_ROOT_ENV]).resolve() if env.get(PROJECT_ROOT_ENV) else None
    if hint is not None and not hint.is_dir():
        hint = None
    if hint is not None and not begin.is_relative_to(hint):
        begin = hint
    folders: list[Path] = []
    root = None
    for folder in (begin, *begin.parents):
        folders.append(folder)
        if folder == hint or any((folder / marker).exists() for marker in PROJECT_MARKERS):
            root = folder
            break
    if root is None:
        folders = [begin]

    def nearest(name: str) -> Path | None:
        return next((f / name for f in folders if (f / name).is_file()), None)

    return ProjectFiles(root=root, dotenv=nearest(DOTENV_FILE), config=nearest(PROFILES_FILE))


@dataclass(frozen=True)
class Settings:
    """Everything aikit needs to make a call; build it with `Settings.resolve()`."""

    home: Path
    provider: Provider
    model: str
    cache: CacheMode
    cache_path: Path
    timeout: float
    max_retries: int
    cassettes: tuple[Path, ...] = ()
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    request_log: str | None = field(default=None, repr=False)  # may hold a database password
    # The settings files that were read (`.env`, `aikit.toml`) and the project root: for doctor.
    files: tuple[Path, ...] = field(default=(), compare=False)
    project_root: Path | None = field(default=None, compare=False)

    @classmethod
    def resolve(
        cls,
        *,
        environ: Mapping[str, str] | None = None,
        dotenv: str | Path | _Find | None = FIND,
        profile: str | None = None,
        config: str | Path | _Find = FIND,
        start: str | Path | None = None,
        **overrides: Any,
    ) -> Settings:
        """Resolve: `overrides` > profile > `environ` (default `os.environ`) > `.env` > default.

        `dotenv` and `config` are found in the project from `start` (default: the notebook's
        folder or the cwd; see the module doc) unless given; `dotenv=None` reads no `.env`.
        """
        unknown = sorted(set(overrides) - set(ENV_NAMES))
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown[0]!r}; known settings: {', '.join(sorted(ENV_NAMES))}"
            )
        env = dict(os.environ if environ is None else environ)
        found = (
            find_project_files(start, environ=env)
            if isinstance(dotenv, _Find) or isinstance(config, _Find)
            else ProjectFiles(None, None, None)
        )
        dotenv_path = found.dotenv if isinstance(dotenv, _Find) else dotenv
        config_path = found.config if isinstance(config, _Find) else Path(config)
        file_values: dict[str, str] = {}
        files: list[Path] = []
        if dotenv_path is not None and Path(dotenv_path).is_file():
            file_values = _read_dotenv(dotenv_path)
            files.append(Path(dotenv_path).resolve())
        chosen = profile or env.get("AIKIT_PROFILE") or file_values.get("AIKIT_PROFILE")
        if config_path is not None and config_path.is_file():
            read_profiles(config_path)  # a malformed file is an error, not "read"
            files.append(config_path.resolve())
        if chosen:
            keys = {**file_values, **{k: v for k, v in env.items() if v}}
            overrides = {**_profile(config_path, chosen, keys, found.root), **overrides}

        def pick(name: str) -> Any:
            if overrides.get(name) is not None:
                return overrides[name]
            var = ENV_NAMES[name]
            if env.get(var):
                return env[var]
            if file_values.get(var):
                return file_values[var]
            return None

        provider = str(pick("provider") or "local").strip().lower()
        if provider not in PROVIDERS:
            raise ConfigError(
                f"AIKIT_PROVIDER={provider!r} is not a provider; use 'local' (the embedded model)"
                " or 'openai' (any OpenAI-compatible endpoint)"
            )
        cache = str(pick("cache") or "on").strip().lower()
        if cache not in CACHE_MODES:
            raise ConfigError(
                f"AIKIT_CACHE={cache!r} is not a cache mode; use one of: {', '.join(CACHE_MODES)}"
            )
        check_idle({**file_values, **env})
        home = Path(pick("home") or Path.home() / ".aikit").expanduser()
        base_url = pick("base_url")
        if base_url is not None:
            given, base_url = base_url, str(base_url).rstrip("/")
            if not base_url.startswith(("http://", "https://")) or not base_url.split("://")[1]:
                raise ConfigError(
                    f"OPENAI_BASE_URL={given!r} is not an http(s) URL;"
                    " set it like http://127.0.0.1:8000/v1"
                )
        else:
            base_url = DEFAULT_URLS[provider]
        return cls(
            home=home,
            provider=cast(Provider, provider),
            model=_model(pick("model"), provider),
            cache=cast(CacheMode, cache),
            cache_path=Path(pick("cache_path") or home / "cache.sqlite").expanduser(),
            timeout=_number("timeout", pick("timeout"), 120.0, float, positive=True),
            max_retries=int(_number("max_retries", pick("max_retries"), 2, int)),
            cassettes=_cassettes(pick("cassettes"), found.root),
            base_url=base_url,
            api_key=pick("api_key"),
            request_log=pick("request_log"),
            files=tuple(files),
            project_root=found.root,
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (the object itself is frozen)."""
        return replace(self, **changes)


def read_profiles(config: str | Path | _Find = FIND) -> dict[str, dict[str, Any]]:
    """The `[profiles.NAME]` tables of `aikit.toml` (the project's by default; empty when there
    is no file)."""
    path = find_project_files().config if isinstance(config, _Find) else Path(config)
    if path is None or not path.is_file():
        return {}
    text = read_text(path, what="settings file", error=ConfigError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the file") from exc
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: `profiles` must be tables like [profiles.NAME]")
    for name, table in tables.items():
        bad = (
            sorted(set(table) - set(PROFILE_KEYS)) if isinstance(table, dict) else ["(not a table)"]
        )
        if bad:
            raise ConfigError(
                f"{path}: profiles.{name}.{bad[0]} is not a profile key;"
                f" use: {', '.join(PROFILE_KEYS)}"
            )
    return tables


def _profile(
    config: Path | None, name: str, env: Mapping[str, str], root: Path | None
) -> dict[str, Any]:
    if config is None or not config.is_file():
        where = f"the project {root}" if root else f"{Path.cwd()} (no project root found)"
        raise ConfigError(
            f"profile {name!r} is not defined: no {PROFILES_FILE} in {where};"
            f" add [profiles.{name}] to {PROFILES_FILE} at the project root, or unset AIKIT_PROFILE"
        )
    tables = read_profiles(config)
    if name not in tables:
        known = ", ".join(sorted(tables)) or f"none (no [profiles.*] in {config})"
        raise ConfigError(f"profile {name!r} is not in {config}; known profiles: {known}")
    values = dict(tables[name])
    key_env = values.pop("api_key_env", None)
    if key_env:
        values["api_key"] = env.get(str(key_env))
    return values


def profiles(config: str | Path | _Find = FIND) -> dict[str, Settings]:
    """Every profile of `aikit.toml` (the project's by default), resolved, after `default` (the
    settings without one)."""
    found = {"default": Settings.resolve(config=config, profile=None)}
    for name in read_profiles(config):
        found[name] = Settings.resolve(config=config, profile=name)
    return found


def _cassettes(value: Any, root: Path | None = None) -> tuple[Path, ...]:
    if value is None:  # the working directory's, then the project's notebooks/cassettes
        value = ["cassettes", str(Path("notebooks") / "cassettes")]
        if root is not None:
            value.append(str(root / "notebooks" / "cassettes"))
        value = list(dict.fromkeys(str(Path(v).resolve()) for v in value))
    if isinstance(value, str):
        value = [v for v in value.split(os.pathsep) if v]
    return tuple(Path(v).expanduser().resolve() for v in value)


def _number(name: str, value: Any, default: float, kind: type, *, positive: bool = False) -> Any:
    """`value` (a setting's text or number) as a finite `kind` >= 0 (> 0 with `positive`);
    the error names the variable, the value and what to set instead."""
    if value is None:
        return default
    var = ENV_NAMES.get(name, name)
    fix = (
        f"set {'a whole number' if kind is int else 'a number of seconds'}"
        f" {'> 0' if positive else '>= 0'} such as {default:g}"
    )
    number = None
    if not isinstance(value, bool):
        try:
            number = kind(value)
        except (TypeError, ValueError, OverflowError):
            number = None
    if number is None:
        whole = "whole " if kind is int else ""
        raise ConfigError(f"{var}={value!r} is not a {whole}number; {fix}")
    if not math.isfinite(number):
        raise ConfigError(f"{var}={value!r} is not a finite number; {fix}")
    if number < 0 or (positive and number == 0):
        raise ConfigError(f"{var}={value!r} is {'negative' if number < 0 else 'zero'}; {fix}")
    return number


def _model(value: Any, provider: str) -> str:
    if value is None:
        return DEFAULT_MODELS[provider]
    if not str(value).strip():
        raise ConfigError(
            f"AIKIT_MODEL={value!r} is blank; name a model (e.g. {DEFAULT_MODELS[provider]})"
            " or unset it"
        )
    return str(value).strip()


def check_idle(environ: Mapping[str, str]) -> float:
    """`AIKIT_SERVER_IDLE_S` checked here, where every command starts, not later in the
    embedded model's server process (0: never stop)."""
    return float(_number(IDLE_ENV, environ.get(IDLE_ENV) or None, 900.0, float))


def _read_dotenv(path: str | Path) -> dict[str, str]:
    """The values of a `.env` file; one that cannot be read is a `ConfigError` naming it."""
    import io

    text = read_text(
        path, what="settings file", error=ConfigError, save_as="UTF-8, one NAME=value a line"
    )
    values = dotenv_values(stream=io.StringIO(text))
    return {k: v for k, v in values.items() if v is not None}


_current: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, resolved on first use and then kept."""
    global _current
    if _current is None:
        _current = Settings.resolve()
    return _current


def configure(
    *,
    profile: str | None = None,
    provider: Provider | None = None,
    model: str | None = None,
    cache: CacheMode | None = None,
    cache_path: str | Path | None = None,
    cassettes: str | Sequence[str | Path] | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    home: str | Path | None = None,
) -> Settings:
    """Re-resolve the process's settings with these on top (e.g. in a notebook cell).

    Each argument beats its environment variable (see the module docstring); `profile` picks
    a profile of `aikit.toml`. Arguments left as None keep the usual resolution.
    """
    global _current
    overrides = {
        "provider": provider,
        "model": model,
        "cache": cache,
        "cache_path": cache_path,
        "cassettes": cassettes,
        "timeout": timeout,
        "max_retries": max_retries,
        "base_url": base_url,
        "api_key": api_key,
        "home": home,
    }
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    _current = Settings.resolve(profile=profile, **given)
    return _current


def reset_settings() -> None:
    """Forget the resolved settings; the next `get_settings()` reads the environment again."""
    global _current
    _current = None
