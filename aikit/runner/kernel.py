"""The project's Jupyter kernel, `aikit`: the one papermill, nbval and JupyterLab all use.

`make setup` installs it into the environment (`python -m ipykernel install --sys-prefix
--name aikit`); a notebook naming a kernel that is not installed gets an error saying how to
install it before anything starts.
"""

from __future__ import annotations

import json
from pathlib import Path

from aikit.errors import KernelMissingError

KERNEL_NAME = "aikit"
INSTALL = (
    f"python -m ipykernel install --sys-prefix --name {KERNEL_NAME} --display-name 'Python (aikit)'"
)


def kernel_of(notebook: str | Path) -> str:
    """The kernel name a notebook's metadata asks for (`python3` when it names none)."""
    try:
        meta = json.loads(Path(notebook).read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return "python3"
    return str(meta.get("kernelspec", {}).get("name") or "python3")


def check_kernel(notebook: str | Path) -> str:
    """The notebook's kernel name, or a `KernelMissingError` with the install command."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    name = kernel_of(notebook)
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel as exc:
        if name == KERNEL_NAME:
            fix = f"run `make setup` or `{INSTALL}`"
        else:
            fix = f"install kernel {name!r} or set the notebook's kernel to {KERNEL_NAME!r}"
        raise KernelMissingError(
            f"{notebook} needs the Jupyter kernel {name!r}, which is not installed; {fix}"
        ) from exc
    return name
