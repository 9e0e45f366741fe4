"""`pytest --nbval notebooks/`: fail early, in one line, when the notebooks' kernel is missing."""

from __future__ import annotations

import pytest

from aikit.runner.kernel import KernelMissingError, check_kernel

# data/ holds documents for the RAG notebook (some are .ipynb files): corpus, not tests.
collect_ignore_glob = ["data/*"]


def pytest_collect_file(parent: pytest.Collector, file_path) -> None:  # type: ignore[no-untyped-def]
    if file_path.suffix == ".ipynb" and parent.config.getoption("--nbval", default=False):
        try:
            check_kernel(file_path)
        except KernelMissingError as exc:
            raise pytest.UsageError(str(exc)) from None
