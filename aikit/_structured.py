"""Structured output: a `response_format` turned into its wire form and a validator of the
answer text. Shared by `aikit.llm` (validation and re-ask) and `aikit.evals` (JSON metrics)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from aikit.errors import ConfigError

Validator = Callable[[str], Any]


def schema_format(response_format: Any) -> tuple[dict[str, Any] | None, Validator | None]:
    """The wire `response_format` and a validator of the answer text (raises on mismatch)."""
    if response_format is None:
        return None, None
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        model_cls = response_format
        name = re.sub(r"[^A-Za-z0-9_-]", "_", model_cls.__name__)[:64]
        wire = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": model_cls.model_json_schema()},
        }
        return wire, lambda text: model_cls.model_validate_json(strip_fences(text))
    if isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        return dict(response_format), lambda text: json.loads(strip_fences(text))
    if isinstance(response_format, Mapping) and response_format.get("type") == "text":
        return dict(response_format), None
    raise ConfigError(
        f"response_format={response_format!r:.80} is not supported; pass a pydantic model class"
        " or {'type': 'json_object'} / {'type': 'json_schema', 'json_schema': {...}}"
    )


def strip_fences(text: str) -> str:
    """The text inside one Markdown code fence (```json ... ```), or the text as it is."""
    match = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text, flags=re.S)
    return match.group(1) if match else text


def validation_message(exc: Exception) -> str:
    """A one-line reason from a pydantic `ValidationError` (field paths and messages)."""
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        ]
        return "; ".join(parts)
    return str(exc)
