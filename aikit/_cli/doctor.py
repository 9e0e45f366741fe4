"""`aikit doctor`: what aikit would use, and whether the model endpoint answers.

`doctor()` returns a `DoctorReport` (its lines and the problem, if any); the CLI prints it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING

from aikit._scrub import redact_url
from aikit.errors import AikitError

if TYPE_CHECKING:
    from aikit.provider import Endpoint


@dataclass
class DoctorReport:
    """`lines`: (label, value) pairs in order; `problem`: why the endpoint does not answer."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    problem: str | None = None

    def add(self, label: str, value: str) -> None:
        self.lines.append((label, value))

    @property
    def ok(self) -> bool:
        return self.problem is None

    def text(self) -> str:
        return "\n".join(f"{label:<10} {value}" for label, value in self.lines)


def doctor() -> DoctorReport:
    """Check the settings, the endpoint (does it answer `GET /models`?), cache and kernel."""
    from aikit.provider import resolve_endpoint
    from aikit.settings import get_settings

    settings = get_settings()
    endpoint = resolve_endpoint(settings)
    report = DoctorReport()
    report.add("aikit", version("aikit"))
    report.add("provider", settings.provider)
    report.add("model", settings.model)
    report.add("endpoint", endpoint.label)
    try:
        _check_endpoint(endpoint, report)
        root = settings.project_root or "(none: no aikit.toml, pyproject.toml or .git above)"
        report.add("project", str(root))
        read = ", ".join(str(f) for f in settings.files) or "none (no .env or aikit.toml found)"
        report.add("files", read)
        report.add("cache", f"{settings.cache}  {settings.cache_path}")
        _kernel(report)
    finally:
        endpoint.stop_what_it_started()  # a server doctor started for the check does not stay
    return report


def _check_endpoint(ep: Endpoint, report: DoctorReport) -> None:
    import openai

    from aikit._clients import sync_client
    from aikit._sync import run_sync

    try:
        base_url = run_sync(ep.check_url())
        report.add("base_url", redact_url(base_url))  # never a credential or query string
    except AikitError as exc:
        base_url, report.problem = "", str(exc)
        report.add("base_url", "(not running)")
    if ep.api_key_env:
        key_env = ep.api_key_env
        report.add("api_key", "set" if ep.api_key else f"NOT SET ({key_env})")
    if report.problem is None:
        started = time.perf_counter()
        client = sync_client(
            base_url=base_url, api_key=ep.api_key or "unset", max_retries=0, timeout=10
        )
        try:
            models = [m.id for m in client.models.list()]
            took = time.perf_counter() - started
            listed = ", ".join(models[:5]) or "none listed"
            report.add("answers", f"yes, in {took:.2f} s (models: {listed})")
        except openai.APIStatusError as exc:
            report.problem = (
                f"{redact_url(base_url)} answered HTTP {exc.status_code} to GET /models"
            )
        except openai.OpenAIError as exc:
            report.problem = f"{redact_url(base_url)} does not answer ({exc.__cause__ or exc})"
        finally:
            client.close()
    if report.problem is not None:
        report.add("answers", "no")


def _kernel(report: DoctorReport) -> None:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        report.add("kernel", "jupyter_client not installed")
        return
    from aikit.runner.kernel import ensure_kernel

    try:
        installed = ensure_kernel()  # an environment not made by `make setup` (conda, pip)
    except AikitError as exc:
        report.add("kernel", str(exc))
        return
    if installed is not None:
        report.add("kernel", f"installed the `aikit` kernel in {installed}")
    manager = KernelSpecManager()
    for name in ("aikit", "python3"):
        try:
            spec = manager.get_kernel_spec(name)
        except NoSuchKernel:
            continue
        python = spec.argv[0]
        if python in ("python", "python3"):  # ipykernel's own spec: started with this Python
            python = sys.executable
        report.add("kernel", f"{name} ({spec.display_name}) -> {python}")
        return
    report.add("kernel", "no python3 kernel; install one with `python -m ipykernel install --user`")
