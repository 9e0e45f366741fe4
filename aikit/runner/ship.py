"""Shipping a run's files to workers that share nothing with the submitter but a bucket.

When runs go to a URL (`--out s3://bucket/runs`), each run spec carries a manifest instead of
relying on the submitter's paths: the notebook, its cassette (`cassettes/<stem>.jsonl` beside
it, when there is one) and the files it declares it reads (the notebook's `data/` folder by
default, or a playbook's `files:` list, relative to the notebook's folder), each named by the
SHA-256 of its bytes. Before submitting, the submitter uploads the blobs the store lacks to
`<out>/.aikit-files/<sha256>`, so a file travels once per bucket however many runs,
submissions and workers use it. A worker fetches each blob once into its machine's cache
(`$AIKIT_HOME/files/`), checks the hash, and lays the files out in the run's scratch folder at
the same relative paths; there `aikit.runner.notebook_dir()` is the notebook's folder.

With a URL as the runs folder a run sees only what it declares, on a laptop's local executor
as on a cluster, so a missing declaration shows up before the sweep leaves the laptop.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from aikit import _storage as storage
from aikit.errors import StorageError
from aikit.settings import get_settings

if TYPE_CHECKING:
    from aikit.runner.spec import RunSpec

FILES_DIR = ".aikit-files"  # under the runs folder: content-addressed blobs
SKIP = frozenset({".ipynb_checkpoints", "__pycache__", ".git", ".DS_Store"})
_hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def display_path(path: Path) -> str:
    """`path` relative to the working directory when it is inside it (as a run records it)."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def git_commit_of(folder: Path) -> str | None:
    """The git commit checked out in `folder`, or None outside a repository."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def sha256_file(path: Path) -> str:
    """The file's SHA-256 (hex), remembered while its size and mtime stay the same."""
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo not in _hashes:
        _hashes[memo] = _digest(path)
    return _hashes[memo]


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def declared_files(notebook: Path, files: Sequence[str] | None = None) -> dict[str, Path]:
    """Relative path (as on the worker) -> local file: the notebook, its cassette, and `files`
    (paths or folders relative to the notebook's folder; default its `data/` folder).

    Raises:
        StorageError: an entry does not exist or lies outside the notebook's folder.
    """
    folder = notebook.resolve().parent
    chosen = {notebook.name: notebook.resolve()}
    cassette = folder / "cassettes" / f"{notebook.stem}.jsonl"
    if cassette.is_file():
        chosen[f"cassettes/{cassette.name}"] = cassette
    if files is None:
        files = ["data"] if (folder / "data").is_dir() else []
    for entry in files:
        path = (folder / entry).resolve()
        if not path.is_relative_to(folder):
            raise StorageError(
                f"files: {entry} is outside the notebook's folder {folder}; a run gets files at"
                " the same place relative to its notebook, so list files inside that folder"
            )
        if not path.exists():
            raise StorageError(f"files: {entry} does not exist in {folder}; check the path")
        for file in _walk(path):
            chosen[file.relative_to(folder).as_posix()] = file
    return chosen


def _walk(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
        return
    for file in sorted(path.rglob("*")):
        if file.is_file() and not SKIP & set(file.relative_to(path).parts):
            yield file


def pack(notebook: Path, files: Sequence[str] | None, out: str) -> dict[str, Any]:
    """The spec fields for a shipped run: manifest, blob store, and where it came from."""

    manifest = {rel: sha256_file(path) for rel, path in declared_files(notebook, files).items()}
    return {
        "files": manifest,
        "files_store": storage.join(out, FILES_DIR),
        "origin": {
            "notebook": display_path(notebook),
            "git_commit": git_commit_of(notebook.parent),
        },
    }


def upload(specs: Sequence[RunSpec]) -> int:
    """Send the blobs that `specs` need and their store lacks; returns how many were sent."""
    stores: dict[str, dict[str, Path]] = {}
    for spec in specs:
        if not spec.files or spec.files_store is None:
            continue
        folder = Path(spec.notebook).parent
        wanted = stores.setdefault(spec.files_store, {})
        for rel, sha in spec.files.items():
            wanted.setdefault(sha, folder / rel)
    sent = 0
    for store, wanted in stores.items():
        have = storage.listing(store)
        missing = [(sha, path) for sha, path in wanted.items() if sha not in have]
        for sha, path in missing:
            if _digest(path) != sha:  # re-read: the bytes sent must be the bytes named
                raise StorageError(f"{path} changed while the runs were being submitted; re-run")
        storage.put_files([(path, storage.join(store, sha)) for sha, path in missing])
        sent += len(missing)
    return sent


def cache_dir() -> Path:
    """This machine's cache of fetched blobs: `$AIKIT_HOME/files`."""

    return get_settings().home / "files"


def materialize(spec: RunSpec, into: Path) -> Path:
    """Lay out a shipped run's files under `into` (fetching blobs this machine lacks);
    returns the notebook's path there."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for rel, sha in (spec.files or {}).items():
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).is_absolute() or ".." in parts:
            raise StorageError(f"shipped file {rel!r} must be a relative path inside the run")
        blob = cache / sha
        if not blob.is_file():
            _fetch(storage.join(str(spec.files_store), sha), blob, sha)
        target = into.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(blob, target)  # a copy: a run that edits its data cannot spoil the cache
    return into / Path(spec.notebook).name


def _fetch(url: str, blob: Path, sha: str) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{sha[:12]}.", dir=blob.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        storage.get_file(url, tmp)
        got = _digest(tmp)
        if got != sha:
            raise StorageError(f"{url} holds bytes with SHA-256 {got}, not {sha}; re-submit")
        os.replace(tmp, blob)  # atomic: runs on this machine fetch at the same time
    finally:
        tmp.unlink(missing_ok=True)
