"""One frozen `Settings`, resolved once: argument > profile > environment > `.env` > default.

A profile is a named table in `aikit.toml` (working directory), chosen with `AIKIT_PROFILE` or
`configure(profile=...)`; `api_key_env` names the variable holding its key:

    [profiles.openai]
    provider = "openai"
    model = "gpt-4o-mini"
    api_key_env = "OPENAI_API_KEY"

    [profiles.ollama]
    provider = "openai"
    base_url = "http://127.0.0.1:11434/v1"
    model = "llama3.2"

Environment variables (the same names may stand in a `.env` file in the working directory):

- `AIKIT_HOME`: state directory (response store, local server discovery file); `~/.aikit`.
- `AIKIT_PROVIDER`: `local` (the embedded model, default) or `openai` (any OpenAI-compatible
  endpoint: OpenAI, Azure, Ollama, vLLM, LM Studio ...).
- `AIKIT_MODEL`: model name; `gemma-3-270m` for `local`, `gpt-4o-mini` for `openai`.
- `AIKIT_CACHE`: response store mode, `on` (default) | `off` | `replay` | `record`.
- `AIKIT_CACHE_PATH`: the response store file; `$AIKIT_HOME/cache.sqlite`.
- `AIKIT_CASSETTES`: where `replay` also looks for recorded answers: JSONL cassette files or
  folders of them, separated by `os.pathsep`; `cassettes` and `notebooks/cassettes` under the
  working directory (so a notebook finds its cassette from the repo root and from `notebooks/`).
- `AIKIT_TIMEOUT`: seconds before a model call times out; 120.
- `AIKIT_MAX_RETRIES`: retries of the openai SDK's own retry loop; 2.
- `OPENAI_BASE_URL`: endpoint for provider `openai`; `https://api.openai.com/v1`.
- `OPENAI_API_KEY`: key for provider `openai`; never written anywhere by aikit.
- `AIKIT_PROFILE`: a profile of `aikit.toml` to use.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from dotenv import dotenv_values

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
    "base_url": "OPENAI_BASE_URL",
    "api_key": "OPENAI_API_KEY",
}


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

    @classmethod
    def resolve(
        cls,
        *,
        environ: Mapping[str, str] | None = None,
        dotenv: str | Path | None = ".env",
        profile: str | None = None,
        config: str | Path = PROFILES_FILE,
        **overrides: Any,
    ) -> Settings:
        """Resolve: `overrides` > profile > `environ` (default `os.environ`) > `.env` > default."""
        unknown = sorted(set(overrides) - set(ENV_NAMES))
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown[0]!r}; known settings: {', '.join(sorted(ENV_NAMES))}"
            )
        env = dict(os.environ if environ is None else environ)
        file_values: dict[str, str] = {}
        if dotenv is not None and Path(dotenv).is_file():
            file_values = {k: v for k, v in dotenv_values(dotenv).items() if v is not None}

        chosen = profile or env.get("AIKIT_PROFILE") or file_values.get("AIKIT_PROFILE")
        overrides = {**(_profile(config, chosen, env) if chosen else {}), **overrides}

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
        home = Path(pick("home") or Path.home() / ".aikit").expanduser()
        base_url = pick("base_url")
        if base_url is not None:
            base_url = str(base_url).rstrip("/")
            if not base_url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"OPENAI_BASE_URL={base_url!r} is not an http(s) URL;"
                    " set it like http://127.0.0.1:8000/v1"
                )
        else:
            base_url = DEFAULT_URLS[provider]
        return cls(
            home=home,
            provider=cast(Provider, provider),
            model=str(pick("model") or DEFAULT_MODELS[provider]),
            cache=cast(CacheMode, cache),
            cache_path=Path(pick("cache_path") or home / "cache.sqlite").expanduser(),
            timeout=_number("timeout", pick("timeout"), 120.0, float),
            max_retries=int(_number("max_retries", pick("max_retries"), 2, int)),
            cassettes=_cassettes(pick("cassettes")),
            base_url=base_url,
            api_key=pick("api_key"),
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (the object itself is frozen)."""
        return replace(self, **changes)


def read_profiles(config: str | Path = PROFILES_FILE) -> dict[str, dict[str, Any]]:
    """The `[profiles.NAME]` tables of `aikit.toml` (empty when there is no file)."""
    path = Path(config)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
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


def _profile(config: str | Path, name: str, env: Mapping[str, str]) -> dict[str, Any]:
    tables = read_profiles(config)
    if name not in tables:
        known = ", ".join(sorted(tables)) or f"none (no [profiles.*] in {config})"
        raise ConfigError(f"profile {name!r} is not in {config}; known profiles: {known}")
    values = dict(tables[name])
    key_env = values.pop("api_key_env", None)
    if key_env:
        values["api_key"] = env.get(str(key_env))
    return values


def profiles(config: str | Path = PROFILES_FILE) -> dict[str, Settings]:
    """Every profile of `aikit.toml`, resolved, after `default` (the settings without one)."""
    found = {"default": Settings.resolve(config=config, profile=None)}
    for name in read_profiles(config):
        found[name] = Settings.resolve(config=config, profile=name)
    return found


def _cassettes(value: Any) -> tuple[Path, ...]:
    if value is None:
        value = os.pathsep.join(["cassettes", str(Path("notebooks") / "cassettes")])
    if isinstance(value, str):
        value = [v for v in value.split(os.pathsep) if v]
    return tuple(Path(v).expanduser().resolve() for v in value)


def _number(name: str, value: Any, default: float, kind: type) -> Any:
    if value is None:
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < 0:
        raise ConfigError(
            f"{ENV_NAMES[name]}={value!r} is not a valid {kind.__name__};"
            f" set a non-negative number such as {default}"
        )
    return number


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
