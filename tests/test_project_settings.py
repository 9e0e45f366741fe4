"""Settings follow the project, not the working directory: a `.env` at the project root reaches
the kernel of `aikit run` started from elsewhere, and `aikit doctor` says which files it read
(issue 14, item 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from conftest import API_KEY
from openai_server import OpenAIServer


def _aikit(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aikit.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _project(tmp_path: Path, server: OpenAIServer) -> Path:
    """A project (pyproject.toml at its root) whose `.env` points aikit at the test server."""
    root = tmp_path / "project"
    (root / "analysis" / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'team'\n")
    (root / ".env").write_text(
        f"AIKIT_PROVIDER=openai\nOPENAI_BASE_URL={server.base_url}\n"
        f"OPENAI_API_KEY={API_KEY}\nAIKIT_MODEL=test-model\nAIKIT_MAX_RETRIES=0\n"
        "AIKIT_CACHE=off\n"
    )
    return root


def test_a_root_dotenv_reaches_the_kernel_of_aikit_run_from_elsewhere(
    tmp_path: Path, server: OpenAIServer
) -> None:
    root = _project(tmp_path, server)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('question: str = "ping"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import aikit\naikit.record('answer', aikit.chat(question).text)\n"
            "aikit.record('files', [str(f) for f in aikit.configure().files])\n"
            "import os\naikit.record('root', os.environ.get('AIKIT_PROJECT_ROOT'))"
        ),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook = root / "analysis" / "notebooks" / "ask.ipynb"
    nbformat.write(nb, notebook)
    elsewhere = tmp_path / "elsewhere"  # not in the project: no .env, no marker
    elsewhere.mkdir()

    # AIKIT_PROVIDER in the environment too: were the .env missed, the call would fail at once
    # (no OpenAI key) instead of starting the embedded model
    done = _aikit(
        "run",
        str(notebook),
        "-p",
        "question",
        "from the sub-folder",
        cwd=elsewhere,
        env={"AIKIT_PROVIDER": "openai"},
    )

    assert done.returncode == 0, done.stderr
    [run_file] = (elsewhere / "runs").rglob("run.json")
    record = json.loads(run_file.read_text())
    assert record["records"]["answer"] == "echo: from the sub-folder"
    assert record["records"]["files"] == [str((root / ".env").resolve())]
    assert record["records"]["root"] == str(root.resolve())  # passed to the kernel by aikit
    assert [r["model"] for r in server.requests] == ["test-model"]  # the one call, here
    assert API_KEY not in run_file.read_text()


def test_doctor_names_the_project_and_the_files_it_read(
    tmp_path: Path, server: OpenAIServer
) -> None:
    root = _project(tmp_path, server)
    (root / "aikit.toml").write_text('[profiles.team]\nmodel = "team-model"\n')
    sub = root / "analysis" / "notebooks"

    done = _aikit("doctor", cwd=sub)

    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert lines["project"] == str(root.resolve())
    assert lines["files"] == f"{(root / '.env').resolve()}, {(root / 'aikit.toml').resolve()}"
    assert lines["base_url"] == server.base_url and lines["answers"].startswith("yes")
    done = _aikit("doctor", cwd=sub, env={"AIKIT_PROFILE": "team"})
    assert dict(line.split(None, 1) for line in done.stdout.splitlines())["model"] == "team-model"
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    lines = dict(ln.split(None, 1) for ln in _aikit("doctor", cwd=nowhere).stdout.splitlines())
    assert lines["files"] == "none (no .env or aikit.toml found)"
