"""The project keeps its promises: README commands, CI, Makefile, conda mirror, public API."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from conftest import ROOT

import aikit


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README's Set-up section needs a ```sh block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_gives_two_commands_that_ci_and_make_use() -> None:
    main, test = _readme_commands()
    assert (main, test) == ("make demo", "make test")
    ci = [
        ln.strip()
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    assert ci[-1] == test, ".ci/run must end by running the README's test command"
    makefile = (ROOT / "Makefile").read_text()
    targets = dict(re.findall(r"^([a-z]+):(.*)$", makefile, re.M))
    assert {"demo", "test", "setup"} <= set(targets)
    assert "setup" in targets["demo"] and "setup" in targets["test"]
    assert "aikit run playbooks/onboarding.yaml" in makefile.split("\ndemo:", 1)[1].split("\n\n")[0]
    onboarding = yaml.safe_load((ROOT / "playbooks" / "onboarding.yaml").read_text())
    notebooks = sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("[0-9]*.ipynb")
    )
    assert [step["notebook"] for step in onboarding["steps"]] == notebooks
    for part in ("lint", "typecheck", "pytest"):
        assert part in targets["test"]
    assert (
        "ruff check" in makefile and "ruff format --check" in makefile and "mypy aikit" in makefile
    )
    assert "-DGGML_NATIVE=OFF" in makefile


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_mirrors_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    have: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            have |= {_name(r) for r in dep["pip"] if not r.startswith("-")}
            assert any(r.startswith("-e .") for r in dep["pip"]), "pip section must install aikit"
        else:
            have.add(_name(dep))
    assert sorted(wanted - have) == []


def test_public_api_is_short_and_sorted() -> None:
    assert aikit.__all__ == sorted(aikit.__all__)
    assert aikit.__all__ == [
        "AikitError",
        "Reply",
        "Run",
        "Settings",
        "Template",
        "abatch",
        "achat",
        "batch",
        "chat",
        "configure",
        "endpoint",
        "estimate",
        "few_shot",
        "get_settings",
        "notebook_dir",
        "record",
        "requests",
        "run_notebook",
        "runs",
        "usage",
    ]
    for name in aikit.__all__:
        assert getattr(aikit, name) is not None


def test_price_table_is_versioned_and_local_is_free() -> None:
    from aikit.costs import Usage, cost_of, price_table

    table = price_table()
    assert table["schema_version"] == 1 and re.fullmatch(r"\d{4}-\d{2}-\d{2}", table["version"])
    assert cost_of("gemma-3-270m", Usage(1000, 1000)) == 0.0
    assert cost_of("gpt-4o", Usage(1_000_000, 0)) == 2.5
    assert cost_of("no-such-model", Usage(1, 1)) is None


def test_an_environment_not_made_by_make_setup_gets_the_kernel(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """conda's environment.yml (or a plain pip install) runs no `ipykernel install`: the first
    `aikit doctor` installs the `aikit` kernel into that environment, pointing at its Python."""
    import json
    import os
    import site
    import subprocess
    import sys

    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the new environment sees this one's packages (aikit, ipykernel) but has no kernels
    (Path(purelib) / "parent.pth").write_text("\n".join([*site.getsitepackages(), str(ROOT)]))
    kernel = env_dir / "share" / "jupyter" / "kernels" / "aikit" / "kernel.json"
    assert not kernel.exists()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "AIKIT_HOME": str(tmp_path / "home"),
        "AIKIT_PROVIDER": "openai",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",  # nothing listens: doctor exits 1, fast
        "OPENAI_API_KEY": "unused",
        "AIKIT_MAX_RETRIES": "0",
    }

    def doctor() -> str:
        return subprocess.run(
            [str(python), "-m", "aikit.cli", "doctor"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        ).stdout

    first = doctor()
    assert f"installed the `aikit` kernel in {kernel.parent}" in first, first
    assert json.loads(kernel.read_text())["argv"][0] == str(python)
    again = doctor()
    assert "installed" not in again and "kernel     aikit (Python (aikit))" in again


def test_every_shipped_playbook_loads_and_onboarding_only_shrinks_samples() -> None:
    """Each playbook's step parameters are ones its notebooks declare, with values of the right
    type (`load_playbook` checks both). The onboarding playbook (`make demo`) may only score
    smaller samples than the lessons: its overrides are sample sizes below the notebook's
    default (or `sample_seed`), so the lessons it runs still compute what they teach."""
    from aikit.runner.params import read_parameters
    from aikit.runner.playbook import load_playbook

    for path in sorted((ROOT / "playbooks").glob("*.yaml")):
        load_playbook(path)  # raises PlaybookError on an undeclared or mistyped parameter
    shrinking = {"limit", "answered", "rag_items", "judge_items", "repeats", "calibration_claims"}
    playbook, plan = load_playbook(ROOT / "playbooks" / "onboarding.yaml")
    for step, (notebook, _) in zip(playbook.steps, plan, strict=True):
        defaults = {name: p.default for name, p in read_parameters(notebook).items()}
        for name, value in step.parameters.items():
            assert name in shrinking | {"sample_seed"}, (
                f"{notebook.name}: {name} is not a sample size"
            )
            if name in shrinking:
                default = defaults[name]
                assert value > 0 and (default == 0 or value < default), (notebook.name, name)
