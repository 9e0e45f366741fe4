"""The labelled sets of the guards (`notebooks/data/guards/`), as eval datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from aikit.errors import DatasetError

if TYPE_CHECKING:
    from aikit.evals import Dataset

FOLDER = Path("notebooks") / "data" / "guards"
SPLITS = ("train", "calibration", "test")


def data_folder() -> Path:
    """`notebooks/data/guards` of the project (found from the working directory up)."""
    here = Path.cwd().resolve()
    for folder in [here, *here.parents]:
        if (folder / FOLDER).is_dir():
            return folder / FOLDER
        if folder.name == "notebooks" and (folder / "data" / "guards").is_dir():
            return folder / "data" / "guards"
    raise DatasetError(f"no {FOLDER} above {here}; run from the aikit project, or pass path=...")


def labelled(
    name: str = "injection", *, split: str | None = None, path: str | Path | None = None
) -> Dataset:
    """A labelled guard set as a `Dataset`: `input` the text, `expected` its label
    (`attack`/`benign` for `injection`, `pii`/`none` for `pii`), metadata `class`, `lang`,
    `split`. `split` keeps one of `train`, `calibration`, `test`."""
    from aikit.evals import Dataset

    if split is not None and split not in SPLITS:
        raise DatasetError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    file = Path(path) if path is not None else data_folder() / f"{name}.jsonl"
    if not file.is_file():
        raise DatasetError(f"{file} does not exist; name one of injection, pii (or pass path=)")
    records = []
    for line in file.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if split is None or row["split"] == split:
            records.append(
                {
                    "id": row["id"],
                    "input": row["text"],
                    "expected": row["label"],
                    **{k: row[k] for k in ("class", "lang", "split") if k in row},
                }
            )
    return Dataset.from_records(records, name=f"{name}:{split or 'all'}")
