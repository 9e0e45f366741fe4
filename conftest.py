"""`pytest --nbval notebooks/` (from the repository root or from notebooks/): the lessons only,
and a one-line error, before any cell runs, when the notebooks' kernel is missing.

Kept at the repository root so the notebooks folder holds lessons only. pytest loads it for
anything collected under the root (the test suite's own fixtures are in tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

# notebooks/data holds documents for the RAG notebook (some are .ipynb files): corpus, not tests.
collect_ignore_glob = ["notebooks/data/*"]


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> None:
    """Check the kernel a notebook names before nbval collects it."""
    if file_path.suffix == ".ipynb" and parent.config.getoption("--nbval", default=False):
        from aikit.runner.kernel import KernelMissingError, check_kernel

        try:
            check_kernel(file_path)
        except KernelMissingError as exc:
            raise pytest.UsageError(str(exc)) from None
