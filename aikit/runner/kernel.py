"""The project's Jupyter kernel, `aikit`: the one papermill, nbval and JupyterLab all use.

`make setup` installs it into the environment (`python -m ipykernel install --sys-prefix
--name aikit`). An environment made another way (conda's `environment.yml`, a plain `pip
install`) gets it from the first `aikit doctor`, `aikit run` or `aikit rerecord`:
`ensure_kernel` installs it into the running environment when it is missing. A notebook naming
any other kernel that is not installed gets an error saying how to install it before anything
starts.
"""

from __future__ import annotations

import json
import sys
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


def ensure_kernel(prefix: str | Path | None = None) -> Path | None:
    """Install the `aikit` kernel into the environment at `prefix` (default: this Python's)
    when no `aikit` kernel is found there or on Jupyter's path; returns the folder it wrote,
    or None when it was already installed. It runs this Python, so it sees aikit."""
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    prefix = Path(prefix or sys.prefix)
    manager = KernelSpecManager()
    manager.kernel_dirs = [str(prefix / "share" / "jupyter" / "kernels"), *manager.kernel_dirs]
    try:
        manager.get_kernel_spec(KERNEL_NAME)
        return None
    except NoSuchKernel:
        pass
    try:
        where = install(kernel_name=KERNEL_NAME, display_name="Python (aikit)", prefix=str(prefix))
    except OSError as exc:
        raise KernelMissingError(
            f"the Jupyter kernel {KERNEL_NAME!r} is not installed and {prefix} cannot be"
            f" written ({exc.strerror}); run `{INSTALL}` where you can"
        ) from exc
    return Path(where)


def check_kernel(notebook: str | Path) -> str:
    """The notebook's kernel name (the `aikit` kernel is installed when missing), or a
    `KernelMissingError` with the install command."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    name = kernel_of(notebook)
    if name == KERNEL_NAME:
        ensure_kernel()
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
