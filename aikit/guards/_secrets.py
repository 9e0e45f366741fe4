"""`secrets`: API keys, tokens and private keys in a text, redacted as `<SECRET:KIND>`.

Two sources: the well-known shapes of provider keys (below), and the values aikit already
keeps out of everything it saves: the process's secret environment variables (`*_API_KEY`,
`*_TOKEN`, `*_SECRET`, `*_PASSWORD`), found in every escaped form the scrubber knows
(`aikit._scrub.forms`: repr, JSON, HTML).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from aikit._scrub import Scrubber
from aikit.guards._core import Verdict, guard

PATTERNS: dict[str, str] = {
    "openai_key": r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
    "aws_access_key": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "slack_token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "google_api_key": r"\bAIza[0-9A-Za-z_\-]{35}",
    "stripe_key": r"\b[rs]k_live_[0-9A-Za-z]{20,}",
    "jwt": r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    "private_key": (
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
    ),
    "bearer_token": r"(?i:\bbearer)\s+[A-Za-z0-9._~+/=-]{20,}",
    "assigned_secret": (
        r"(?i:\b(?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|password|passwd))"
        r"\s*[:=]\s*['\"]?[^\s'\"]{8,}"
    ),
}
_PATTERN = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in PATTERNS.items()))
_SECRET_ENV = re.compile(r".*(_API_KEY|_TOKEN|_SECRET|_PASSWORD)$")


@lru_cache(maxsize=8)
def _scrubber(items: tuple[tuple[str, str], ...]) -> Scrubber:
    return Scrubber(dict(items))


def known_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """NAME -> value of the secret-looking environment variables (8 characters or more)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if _SECRET_ENV.fullmatch(k) and len(v) >= 8}


@guard("secrets")
def secrets(text: str, *, context: Mapping[str, Any] | None = None) -> Verdict:
    """API keys and tokens (provider key shapes, and this process's secret variables)."""
    kinds: list[str] = []

    def swap(match: re.Match[str]) -> str:
        kind = match.lastgroup or "secret"
        kinds.append(kind)
        return f"<SECRET:{kind}>"

    redacted = _PATTERN.sub(swap, text)
    scrubber = _scrubber(tuple(sorted(known_secrets().items())))
    if scrubber:
        before = redacted
        redacted = scrubber.text(redacted)
        if redacted != before:
            kinds.append("environment variable")
            redacted = re.sub(r"secret:([A-Z0-9_]+)", r"<SECRET:\1>", redacted)
    if not kinds:
        return Verdict("secrets")
    counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
    return Verdict(
        "secrets",
        action="redact",
        reasons=tuple(f"{n} {k}" for k, n in counts.items()),
        score=1.0,
        redacted=redacted,
    )
