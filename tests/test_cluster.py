"""Beyond one machine: runs, shipped files and RAG indexes on object storage, and a sweep on a
Dask cluster in miniature whose workers share nothing with the submitter but a bucket.

The S3 endpoint is moto's server mode on 127.0.0.1 (a real S3 protocol peer); the scheduler
and workers are separate `dask` processes (see `tests/cluster.py`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from cluster import AWS_KEY_ID, AWS_SECRET, DaskCluster, S3Server
from conftest import API_KEY
from openai_server import OpenAIServer

import aikit
from aikit import _storage as storage
from aikit import registry
from aikit.errors import StorageError

pytest.importorskip("s3fs", reason="object storage needs `pip install aikit[cloud]`")
pytest.importorskip("moto", reason="the S3 test server needs `pip install aikit[dev]`")

pytestmark = pytest.mark.cluster

WORDS = "alpha beta gamma delta"

BODY = """\
import os
import aikit
from aikit.runner import notebook_dir
words = (notebook_dir() / "data" / "words.txt").read_text().split()
aikit.record("word", words[index])
aikit.record("notebook_dir", str(notebook_dir()))
aikit.record("home", os.environ["HOME"])
aikit.record("sees_undeclared", (notebook_dir() / "notes.txt").exists())
aikit.record("key_length", len(api_key))
if calls:
    aikit.record("reply", aikit.chat(f"say {words[index]}", max_tokens=8).text)
open("artifact.txt", "w").write(words[index])
"""


def write_project(folder: Path, *, files: str = "", parameters: str = "{}") -> Path:
    """A notebook reading `data/words.txt` beside it, and a 3-item playbook over it."""
    (folder / "notebooks" / "data").mkdir(parents=True)
    (folder / "notebooks" / "data" / "words.txt").write_text(WORDS)
    (folder / "notebooks" / "notes.txt").write_text("not declared: never shipped")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "index: int = 0  # which word\ncalls: bool = False  # ask the model\n"
            'api_key: str = ""  # a secret: pass secret:NAME',
            metadata={"tags": ["parameters"]},
        ),
        nbformat.v4.new_code_cell(BODY),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, folder / "notebooks" / "words.ipynb")
    book = folder / "playbooks" / "words.yaml"
    book.parent.mkdir()
    book.write_text(
        "name: words\nsteps:\n  - notebook: notebooks/words.ipynb\n"
        f"    parameters: {parameters}\ngrid:\n  index: [0, 1, 2]\n{files}"
    )
    return book


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aikit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: S3Server, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, and this process's environment pointing at the endpoint."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3.bucket(request.node.name.replace("_", "-")[:40].strip("-").lower())


def all_objects(s3: S3Server, url: str) -> dict[str, bytes]:
    fs = s3.filesystem()
    return {path: fs.cat_file(path) for path in fs.find(url)}


def test_locations_paths_and_urls(tmp_path: Path) -> None:
    assert storage.join("s3://b/runs/", "sweep", "r1") == "s3://b/runs/sweep/r1"
    assert storage.join(tmp_path, "a", "b") == str(tmp_path / "a" / "b")
    assert storage.join("file:///srv/runs", "x") == "/srv/runs/x"
    assert storage.parent("s3://b/runs/x/run.json") == "s3://b/runs/x"
    assert storage.is_url("gs://b/x") and not storage.is_url("file:///x")
    assert not storage.is_url(tmp_path)
    storage.write_text(tmp_path / "deep" / "f.txt", "one")
    storage.write_text(tmp_path / "deep" / "f.txt", "two")
    assert storage.read_text(tmp_path / "deep" / "f.txt") == "two"
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["f.txt"]  # no temp file left
    assert storage.find(tmp_path, "f.txt") == [str(tmp_path / "deep" / "f.txt")]
    assert storage.find(tmp_path / "missing", "f.txt") == []
    with pytest.raises(StorageError, match="must not carry credentials") as info:
        storage.normalize("s3://AKIAXX:hunter2@bucket/runs")
    assert "hunter2" not in str(info.value) and "AKIAXX" not in str(info.value)


def test_a_url_with_credentials_is_refused_before_anything_runs(tmp_path: Path) -> None:
    book = write_project(tmp_path)
    done = cli("run", str(book), "--out", "s3://AKIAXX:hunter2@bucket/runs", cwd=tmp_path, env={})
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "a URL must not carry credentials" in done.stderr and "hunter2" not in done.stderr


def test_runs_go_to_the_bucket_with_only_their_declared_files(
    bucket: str, s3: S3Server, tmp_path: Path
) -> None:
    """The local executor, runs to S3: the run sees its declared files only, in a scratch
    folder; the record, executed notebook and artifacts are in the bucket."""
    book = write_project(tmp_path, files="files: [data/words.txt]\n")
    out = f"{bucket}/runs"
    done = cli("run", str(book), "--out", out, "--workers", "2", cwd=tmp_path, env={})
    assert done.returncode == 0, done.stderr
    assert (
        f"runs: {out}/words/  summary: {out}/words/summary.html and {out}/words/summary.csv"
        in done.stdout
    )
    frame = aikit.runs(out)
    assert sorted(frame["word"]) == ["alpha", "beta", "gamma"]
    assert not frame["sees_undeclared"].any()  # notes.txt was not declared, so not shipped
    assert not any(str(tmp_path) in d for d in frame["notebook_dir"])
    objects = all_objects(s3, out)
    names = [p.rsplit("/", 1)[-1] for p in objects if "/runs/words/" in p]
    assert names.count("run.json") == 3 and names.count("words.ipynb") == 3
    assert names.count("artifact.txt") == 3 and "summary.csv" in names
    run = registry.find_run(frame["run_id"][0], out)
    assert run.dir == f"{out}/words/{run.run_id}"
    assert run.output == f"{run.dir}/words.ipynb"
    assert run.notebook == "notebooks/words.ipynb"  # as submitted, not the scratch copy
    assert run.output is not None
    executed = nbformat.reads(storage.read_text(run.output), as_version=4)
    assert any("outputs" in c for c in executed.cells)
    blobs = [p for p in objects if "/.aikit-files/" in p]
    assert len(blobs) == 2  # the notebook and words.txt, once each for three runs
    # One notebook, no playbook: its data/ folder is shipped by default (the same two blobs).
    notebook = str(tmp_path / "notebooks" / "words.ipynb")
    single = cli("run", notebook, "-p", "index", "3", "--out", out, cwd=tmp_path, env={})
    assert single.returncode == 0, single.stderr
    assert f"\nexecuted notebook: {out}/words/" in single.stdout  # after the progress lines
    assert "word = 'delta'" in single.stdout and "sees_undeclared = False" in single.stdout
    assert sorted(p for p in all_objects(s3, out) if "/.aikit-files/" in p) == sorted(blobs)
    # A declared file that is not there is a playbook error, before anything runs.
    bad = write_project(tmp_path / "bad", files="files: [data/missing.csv]\n")
    refused = cli("run", str(bad), "--out", out, cwd=tmp_path, env={})
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"aikit: error: {bad}: files: data/missing.csv does not")


def test_a_sweep_on_a_two_worker_cluster_sharing_only_a_bucket(
    bucket: str, s3: S3Server, tmp_path: Path
) -> None:
    """Item 4 of issue 16: scheduler and two workers as separate processes, each worker in its
    own empty folder; the notebook and its data reach the workers through the bucket, the
    model key only exists in the workers' environment, and every run lands in the bucket."""
    book = write_project(
        tmp_path / "project", parameters="{calls: true, api_key: 'secret:OPENAI_API_KEY'}"
    )
    out = f"{bucket}/runs"
    assert "OPENAI_API_KEY" not in os.environ  # the submitter has no model key
    model = OpenAIServer().start()
    worker_env = {  # the model's settings and key exist on the workers only
        "AIKIT_PROVIDER": "openai",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": API_KEY,
        "AIKIT_MODEL": "test-model",
    }
    cluster = DaskCluster(tmp_path / "cluster", workers=2, env=s3.env | worker_env)
    try:
        cluster.start()
        args = ["--executor", "dask", "--scheduler", cluster.address, "--out", out]
        done = cli("run", str(book), *args, cwd=tmp_path / "project", env={})
        assert done.returncode == 0, done.stderr
        listed = cli("runs", "--out", out, cwd=tmp_path, env={})
        assert listed.returncode == 0, listed.stderr
        frame = aikit.runs(out, "words")
        assert len(frame) == 3 and set(frame["status"]) == {"succeeded"}
        assert sorted(frame["word"]) == ["alpha", "beta", "gamma"]
        for run_id, word in zip(frame["run_id"], frame["word"], strict=True):
            assert run_id in listed.stdout and word in listed.stdout
        assert sorted(frame["reply"]) == ["echo: say alpha", "echo: say beta", "echo: say gamma"]
        assert list(frame["calls"]) == [1, 1, 1]  # usage.jsonl came back with each run
        # `secret:OPENAI_API_KEY` was read on the workers: the submitter has no such variable.
        assert list(frame["key_length"]) == [len(API_KEY)] * 3
        assert set(frame["api_key"]) == {"secret:OPENAI_API_KEY"}
        homes = {str(d / "home") for d in cluster.worker_dirs}
        assert set(frame["home"]) == homes  # both workers ran some of the three
        for home, where in zip(frame["home"], frame["notebook_dir"], strict=True):
            assert where.startswith(str(Path(home).parent / "tmp"))  # a scratch copy there
        assert not frame["sees_undeclared"].any()
        # Each worker fetched what it needed once, into its own AIKIT_HOME.
        for folder in cluster.worker_dirs:
            cached = sorted((folder / "aikit-home" / "files").iterdir())
            assert len(cached) == 2 and not list((folder / "cwd").iterdir())
        objects = all_objects(s3, bucket)
        assert sum(p.endswith("/run.json") for p in objects) == 3
        assert sum(p.endswith("/usage.jsonl") for p in objects) == 3
        a, b = sorted(frame["run_id"])[:2]
        compared = cli("compare", a, b, "--out", out, cwd=tmp_path, env={})
        assert compared.returncode == 0 and "word" in compared.stdout, compared.stderr
        # A re-run against the bucket skips all three; nothing new is written.
        again = cli("run", str(book), *args, cwd=tmp_path / "project", env={})
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("skipped (done)") == 3
        assert sum(p.endswith("/run.json") for p in all_objects(s3, bucket)) == 3
        # No credential of any kind is in the bucket: not S3's, not the model's.
        for path, data in all_objects(s3, bucket).items():
            for secret in (AWS_SECRET, AWS_KEY_ID, API_KEY):
                assert secret.encode() not in data, (path, secret)
    finally:
        cluster.stop()
        model.stop()


def test_run_records_read_back_from_the_bucket_alone(bucket: str, tmp_path: Path) -> None:
    """`aikit.runs(URL)`, `find_run` and `compare` on records another machine wrote."""
    out = f"{bucket}/runs"
    for run_id, score in (("r-1", 0.5), ("r-2", 0.75)):
        run = registry.Run(run_id=run_id, name="n", notebook="x.ipynb", status="succeeded")
        run.started, run.records = f"2026-01-0{run_id[-1]}T00:00:00", {"score": score}
        run.dir = f"{out}/n/{run_id}"
        registry.write_run(run)
    frame = aikit.runs(out)
    assert list(frame["run_id"]) == ["r-1", "r-2"] and list(frame["score"]) == [0.5, 0.75]
    table = registry.compare_runs("r-1", "r-2", out)
    row = table[table["name"] == "score"].iloc[0]
    assert (row["a"], row["b"], row["delta"]) == (0.5, 0.75, 0.25)
    assert aikit.runs(f"{bucket}/nothing-here").empty


def test_a_rag_index_lives_in_the_bucket_with_its_full_text_index(
    bucket: str, s3: S3Server, remote: OpenAIServer, isolated: Path, tmp_path: Path
) -> None:
    """`rag.Index("s3://...")` answers as the same index on disk does, in every mode, after a
    re-open; the embedding cache stays on this machine."""
    from aikit import rag

    docs = [
        rag.Document(text="# Leave\n\nYou get 27 days of annual leave.\n", source="leave.md"),
        rag.Document(
            text="VPN\n\nInstall WireGuard from the self-service app.\n", source="vpn.txt"
        ),
        rag.Document(text="Expenses\n\nClaim travel within 30 days.\n", source="money.txt"),
    ]
    url = f"{bucket}/indexes/handbook"
    settings = {"embedder": "openai:test-embed", "chunk_size": 64, "chunk_overlap": 8}
    in_bucket = rag.Index(url, **settings)
    on_disk = rag.Index(tmp_path / "index", **settings)
    assert in_bucket.add(docs) == on_disk.add(docs) == 3
    assert list(in_bucket.search("WireGuard", k=1, mode="bm25")["source"]) == ["vpn.txt"]
    reopened = rag.Index(url, embedder="openai:test-embed")
    assert (reopened.chunk_size, reopened.chunk_overlap, len(reopened)) == (64, 8, 3)
    for mode in rag.MODES:
        for query in ("annual leave days", "WireGuard VPN", "travel claims"):
            got = reopened.search(query, k=2, mode=mode)
            assert got.equals(on_disk.search(query, k=2, mode=mode)), (mode, query)
    keys = list(all_objects(s3, url))
    assert f"{url[5:]}/aikit-index.json" in keys
    assert any("/chunks.lance/_indices/" in k for k in keys)  # the full-text index, in S3
    assert (isolated / "embeddings.sqlite").is_file() and not (isolated / "rag").exists()
    assert reopened.delete("vpn.txt") == 1
    assert "vpn.txt" not in set(reopened.search("WireGuard", k=3, mode="bm25")["source"])
    with pytest.raises(rag.RagError, match="was built with embedder"):
        rag.Index(url, embedder="openai:other-embed")
