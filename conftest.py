"""`pytest --nbval notebooks/` (from the repository root or from notebooks/): the lessons only,
and a one-line error (exit code 4), before any kernel starts, when a notebook's kernel is missing.

Kept at the repository root so the notebooks folder holds lessons only. pytest loads it for
anything collected under the root (the test suite's own fixtures are in tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "notebooks" / "data"

# notebooks/data holds documents for the RAG notebook (some are .ipynb files): corpus, not tests.
collect_ignore_glob = ["notebooks/data/*"]


def _notebooks(args: list[str]) -> list[Path]:
    """The notebooks the command line names, directly or in its folders, minus the corpus."""
    found: list[Path] = []
    for arg in args:
        path = Path(arg.split("::")[0]).resolve()
        candidates = sorted(path.rglob("*.ipynb")) if path.is_dir() else [path]
        found += [
            p
            for p in candidates
            if p.suffix == ".ipynb"
            and not p.is_relative_to(DATA)
            and ".ipynb_checkpoints" not in p.parts
        ]
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    """Check the kernel every notebook names before nbval starts one."""
    if not session.config.getoption("--nbval", default=False):
        return
    from aikit.runner.kernel import KernelMissingError, check_kernel

    for notebook in _notebooks(session.config.args):
        try:
            check_kernel(notebook)
        except KernelMissingError as exc:
            raise pytest.UsageError(str(exc)) from None
