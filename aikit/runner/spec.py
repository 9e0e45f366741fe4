"""The typed run, from the plan to the record: `RunSpec` (everything a worker needs to execute
one run) and `Plan` (a checked playbook: the parsed file and, per step, its runs).

A `RunSpec` crosses process boundaries (the child process reads it as JSON on stdin; a Dask
worker gets it pickled), so its fields are plain data: `to_json` / `from_json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aikit._scrub import secret_envs, secret_values

if TYPE_CHECKING:
    from aikit.registry import Run
    from aikit.runner.playbook import Playbook


@dataclass(frozen=True)
class RunSpec:
    """One run to execute.

    Attributes:
        notebook: the notebook's absolute path (on the submitting machine).
        parameters: checked parameter values (`secret:NAME` references stay references).
        name: the runs folder's name (`out/name/run_id/`).
        run_id: the run's id (time, notebook, random).
        run_dir: where the run's files go: a local absolute path or a URL.
        key: the identity of its inputs (notebook bytes, parameters): a rerun is skipped on it.
        playbook: the playbook's name, for a playbook's run.
        env: added to the kernel's environment (the cassette recorder sets `AIKIT_CACHE`).
        project_root: where its kernel finds `.env` and `aikit.toml`.
        files: a shipped run's manifest (relative path -> SHA-256), when runs go to a URL.
        files_store: where a shipped run's blobs are.
        origin: a shipped run's notebook and git commit where it was submitted.
    """

    notebook: str
    parameters: Mapping[str, Any]
    name: str
    run_id: str
    run_dir: str
    key: str
    playbook: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    project_root: str | None = None
    files: Mapping[str, str] | None = None
    files_store: str | None = None
    origin: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able data (`from_json` reads it back)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def secrets(self) -> dict[str, str]:
        """Environment variable -> value now, for each `secret:NAME` parameter."""
        return secret_values(self.parameters)

    @property
    def secret_envs(self) -> dict[str, str]:
        """Parameter -> environment variable, for each `secret:NAME` parameter."""
        return secret_envs(self.parameters)


@dataclass(frozen=True)
class PlannedRun:
    """A run of a plan: its spec, and the earlier successful run that makes it unnecessary."""

    spec: RunSpec
    earlier: Run | None = None


@dataclass(frozen=True)
class Plan:
    """A checked playbook, read once: the parsed file, where its runs go, and per step its
    runs (`aikit.runner.plan_playbook`)."""

    path: Path
    playbook: Playbook
    out: str | Path
    steps: list[list[PlannedRun]]

    @property
    def name(self) -> str:
        return self.playbook.name

    @property
    def workers(self) -> int:
        return self.playbook.workers

    @property
    def fail_under(self) -> dict[str, float]:
        """The playbook's own gate."""
        return dict(self.playbook.fail_under)

    @property
    def specs(self) -> list[RunSpec]:
        """Every run's spec, step by step."""
        return [planned.spec for step in self.steps for planned in step]
