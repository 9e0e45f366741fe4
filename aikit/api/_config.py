"""What a server process of `aikit api` needs: the notebook, its parameters and the limits.

JSON-able, so `--workers N` hands it to each worker process in an environment variable.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

CONFIG_ENV = "AIKIT_API_CONFIG"


@dataclass
class Config:
    """Everything a server process needs (see `aikit api --help` for each limit).

    `host`/`port` are where the server listens: a request whose `Host` header names another
    address is refused (421, DNS rebinding) unless it is in `allow_hosts`; a POST whose
    `Origin` is not this server is refused (403, cross-site requests) unless it is in
    `allow_origins`.
    """

    notebook: str
    parameters: dict[str, Any] = field(default_factory=dict)
    token_env: str | None = None
    max_body: int = 1_048_576
    timeout_s: float = 60.0
    concurrency: int = 32
    queue: int = 64
    batch_concurrency: int = 8
    max_batch: int = 256
    body_timeout_s: float = 10.0
    readers: int = 256
    host: str = "127.0.0.1"
    port: int = 8000
    allow_hosts: list[str] = field(default_factory=list)
    allow_origins: list[str] = field(default_factory=list)
    guards: list[str] = field(default_factory=list)  # `--guard NAME`, on every endpoint
    score: list[str] = field(default_factory=list)  # `--score METRIC[:RATE]`, on every endpoint
    alert: list[str] = field(default_factory=list)  # `--alert METRIC<VALUE`

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Config:
        return cls(**json.loads(os.environ[CONFIG_ENV]))
