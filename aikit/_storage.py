"""Where runs, shipped files and RAG metadata live: a local folder or any fsspec URL.

One seam for the runner, the registry and `rag.Index`, so each of them reads and writes a
location without caring whether it is `runs/`, `file:///srv/runs`, `s3://bucket/runs`,
`gs://...` or `az://...`. Local paths keep plain `pathlib` semantics (an atomic rename for
every write); URLs go through `fsspec` (`pip install 'aikit[cloud]'` brings `s3fs`; `gcsfs` and
`adlfs` work the same once installed), where one object upload is atomic.

Credentials never pass through here: fsspec finds them where the filesystem's own tools do
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_PROFILE`, `~/.aws/`, `AWS_ENDPOINT_URL` for an
S3-compatible endpoint; `GOOGLE_APPLICATION_CREDENTIALS`; `AZURE_STORAGE_*`; or fsspec's own
config, e.g. `FSSPEC_S3_ENDPOINT_URL`). A URL carrying a user name or password is refused,
because URLs end up in run records.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aikit.errors import StorageError

Location = str | Path
CLOUD_HINT = (
    "install the filesystem with pip install 'aikit[cloud]' (s3fs; gcsfs, adlfs for GCS, Azure)"
)


def is_url(location: Location) -> bool:
    """True for a URL other than `file://` (those go through fsspec)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def _local(location: Location) -> Path:
    text = str(location)
    if text.startswith("file://"):
        text = text[len("file://") :]
    return Path(text).expanduser()


def normalize(location: Location) -> str:
    """A local path as given (a `file://` URL as its path), a URL without its trailing slash.

    Raises:
        StorageError: the URL names credentials (`s3://KEY:SECRET@bucket`), or no bucket.
    """
    if not is_url(location):
        return str(_local(location))
    if not str(location).split("://", 1)[1].strip("/"):
        parts = urlsplit(str(location))
        raise StorageError(
            f"{location} names no bucket or host; write e.g. {parts.scheme or 's3'}://bucket/runs"
        )
    text = str(location).rstrip("/")
    parts = urlsplit(text)
    if parts.username or parts.password:
        raise StorageError(
            f"{parts.scheme}://{parts.hostname}{parts.path}: a URL must not carry credentials"
            " (they would be written into run records); set them in the environment instead"
            " (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, ...)"
        )
    return text


def join(base: Location, *parts: str) -> str:
    """`base/part/...` for a path or a URL (a URL keeps its `//`; `Path` would collapse it)."""
    if not is_url(base):
        return str(_local(base).joinpath(*parts))
    return "/".join([normalize(base), *(p.strip("/") for p in parts if p)])


def name(location: Location) -> str:
    """The last part of a path or URL."""
    return str(location).rstrip("/").rsplit("/", 1)[-1]


def parent(location: Location) -> str:
    """The folder holding a path or URL."""
    if not is_url(location):
        return str(_local(location).parent)
    return normalize(location).rsplit("/", 1)[0]


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem for `url` and the path inside it."""
    try:
        from fsspec.core import url_to_fs  # type: ignore[import-untyped]
    except ImportError as exc:
        raise StorageError(f"{url} needs fsspec; {CLOUD_HINT}") from exc
    try:
        fs, path = url_to_fs(normalize(url))
    except (ImportError, ValueError) as exc:
        raise StorageError(f"cannot open {url}: {exc}; {CLOUD_HINT}") from exc
    except OSError as exc:  # a filesystem that connects when made (ftp, sftp, ...)
        raise StorageError(
            f"cannot reach {url} ({exc.strerror or exc}); check the host and port"
        ) from exc
    return fs, str(path)


@contextlib.contextmanager
def _errors(action: str, url: str, *, keep_missing: bool = False) -> Iterator[None]:
    """One-line `StorageError`s for what a filesystem raises (missing bucket, no credentials);
    with `keep_missing`, a missing file stays a `FileNotFoundError` as for a local file."""
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError as exc:
        if keep_missing:
            raise
        raise StorageError(f"cannot {action} {url}: it does not exist ({exc})") from exc
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(
            f"cannot {action} {url}: {reason}; check the URL, that the bucket exists, and the"
            " credentials in this machine's environment (AWS_*, a profile, AWS_ENDPOINT_URL)"
        ) from exc


def exists(location: Location) -> bool:
    """Whether a file or folder is there."""
    if not is_url(location):
        return _local(location).exists()
    fs, path = filesystem(str(location))
    with _errors("read", str(location)):
        fs.invalidate_cache(path)
        return bool(fs.exists(path))


def read_bytes(location: Location) -> bytes:
    """A file's bytes (`FileNotFoundError` when it is missing, as for a local file)."""
    if not is_url(location):
        return _local(location).read_bytes()
    fs, path = filesystem(str(location))
    with _errors("read", str(location), keep_missing=True):
        data: bytes = fs.cat_file(path)
    return data


def read_text(location: Location) -> str:
    return read_bytes(location).decode("utf-8")


def write_bytes(location: Location, data: bytes) -> str:
    """Write a file whole: a reader sees the old content or the new, never half of it."""
    if not is_url(location):
        file = _local(location)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.urandom(4).hex()}.tmp")  # umask permissions
        try:
            tmp.write_bytes(data)
            os.replace(tmp, file)
        finally:
            tmp.unlink(missing_ok=True)
        return str(file)
    fs, path = filesystem(str(location))
    with _errors("write", str(location)):
        fs.pipe_file(path, data)
    return normalize(location)


def write_text(location: Location, text: str) -> str:
    return write_bytes(location, text.encode("utf-8"))


def find(base: Location, filename: str) -> list[str]:
    """Every file called `filename` anywhere under `base`, sorted; [] when `base` is missing."""
    if not is_url(base):
        root = _local(base)
        return sorted(str(p) for p in root.rglob(filename)) if root.exists() else []
    fs, path = filesystem(str(base))
    with _errors("list", str(base)):
        fs.invalidate_cache(path)  # other machines write here: never trust a cached listing
        found = fs.find(path)
    return sorted(fs.unstrip_protocol(p) for p in found if p.rsplit("/", 1)[-1] == filename)


def read_many(locations: Sequence[str]) -> dict[str, bytes]:
    """Several files' bytes at once (concurrent requests for object storage)."""
    remote = [loc for loc in locations if is_url(loc)]
    found = {loc: _local(loc).read_bytes() for loc in locations if not is_url(loc)}
    if remote:
        fs, _ = filesystem(remote[0])
        paths = {filesystem(loc)[1]: loc for loc in remote}
        with _errors("read", remote[0]):
            data = fs.cat(list(paths), on_error="raise")
        found |= {paths[p]: value for p, value in data.items()}
    return found


def listing(base: Location) -> set[str]:
    """Names of the entries directly in a folder or prefix (empty when it is missing)."""
    if not is_url(base):
        root = _local(base)
        return {p.name for p in root.iterdir()} if root.is_dir() else set()
    fs, path = filesystem(str(base))
    with _errors("list", str(base)):
        fs.invalidate_cache(path)
        if not fs.exists(path):
            return set()
        return {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)}


def put_files(pairs: Sequence[tuple[Path, str]]) -> None:
    """Copy local files to their locations (concurrent uploads for object storage)."""
    remote = [(src, dst) for src, dst in pairs if is_url(dst)]
    for src, dst in pairs:
        if not is_url(dst):
            write_bytes(dst, src.read_bytes())
    if remote:
        fs, _ = filesystem(remote[0][1])
        with _errors("write", remote[0][1]):
            fs.put([str(s) for s, _ in remote], [filesystem(d)[1] for _, d in remote])


def get_file(location: str, target: Path) -> None:
    """Download one file to a local path."""
    if not is_url(location):
        write_bytes(target, _local(location).read_bytes())
        return
    fs, path = filesystem(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _errors("read", location):
        fs.get_file(path, str(target))
