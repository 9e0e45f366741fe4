"""`Dataset`: the items an eval runs over, each with an `id`, an `input`, an `expected` answer
and any other fields as metadata. Read from JSONL, CSV or a DataFrame; a malformed row is a
`DatasetError` naming the file and the row number."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aikit._userfile import read_text
from aikit.errors import DatasetError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Item:
    """One eval item: what the task gets (`input`) and what a right answer looks like."""

    id: str
    input: Any
    expected: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """An ordered list of `Item`s with unique ids.

    Example:
        >>> ds = Dataset.from_records([{"id": "q1", "input": "2+2?", "expected": "4"}])
        >>> len(ds), ds[0].expected
        (1, '4')
    """

    items: tuple[Item, ...]
    name: str = "dataset"

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Item:
        return self.items[index]

    @classmethod
    def from_records(
        cls, records: Sequence[Mapping[str, Any]], *, name: str = "dataset"
    ) -> Dataset:
        """Build from dicts with `input` (required), `id` and `expected` (optional); other
        keys become metadata. A missing `id` becomes the row number (1-based)."""
        return _build(list(enumerate(records, start=1)), name=name, where=name)

    @classmethod
    def from_jsonl(cls, path: str | Path) -> Dataset:
        """Read one JSON object per line (blank lines are skipped; row = line number)."""
        file = Path(path)
        numbered: list[tuple[int, Any]] = []
        for number, line in enumerate(_read(file).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{file} row {number}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from exc
        return _build(numbered, name=file.stem, where=str(file))

    @classmethod
    def from_csv(cls, path: str | Path) -> Dataset:
        """Read a CSV file whose header row names `input` (and `id`, `expected`, ...); the
        header is row 1."""
        file = Path(path)
        rows = list(csv.reader(io.StringIO(_read(file), newline="")))
        if not rows:
            raise DatasetError(f"{file}: empty; the first row must name the columns (input, ...)")
        header, numbered = rows[0], []
        for number, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetError(
                    f"{file} row {number}: {len(row)} fields, but the header has {len(header)}"
                )
            numbered.append((number, dict(zip(header, row, strict=True))))
        return _build(numbered, name=file.stem, where=str(file))

    @classmethod
    def from_df(cls, df: pd.DataFrame, *, name: str = "dataframe") -> Dataset:
        """From a DataFrame with an `input` column (and `id`, `expected`, metadata columns)."""
        if "input" not in df.columns:
            raise DatasetError(
                f"{name}: no 'input' column (columns: {', '.join(map(str, df.columns))});"
                " rename the prompt column to input"
            )
        records = [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]
        return cls.from_records(records, name=name)

    @classmethod
    def from_requests(
        cls,
        log: pd.DataFrame | None = None,
        *,
        endpoint: str | None = None,
        n: int | None = None,
        seed: int = 0,
        input_field: str | None = None,
        expected_from_output: bool = False,
        name: str | None = None,
        lowest: int | None = None,
        by: str | None = None,
    ) -> Dataset:
        """Requests that `aikit api` answered (status 200), sampled into an eval dataset.

        Closes the loop from production to evaluation: each answered call (and each item of a
        batch) becomes an item with id = request id (`#i` for a batch item) and input = the
        request's JSON object, or its field `input_field` (the other fields go to metadata).
        `expected` stays None to be labelled, or is the logged answer with
        `expected_from_output=True` (a regression set: does a change alter the answers?).

        Args:
            log: rows of `aikit.requests()` (default: read the log of the current AIKIT_HOME).
            endpoint: only this endpoint's requests.
            n: sample this many items at random (reproducible with `seed`); default all.
            seed: the sample's seed.
            input_field: use this request field as the input.
            expected_from_output: take `expected` from the logged output.
            name: the dataset's name (default `requests` or `requests-<endpoint>`).
            lowest: keep only the `lowest` requests with the lowest live score `by`
                (`aikit api --score`), so the worst live answers become eval items; their
                score is in each item's metadata under `by`.
            by: the live metric to rank by, e.g. "faithfulness" (needed with `lowest`).
        """
        import random

        from aikit.api import requests  # the request log's public reader (`aikit.requests`)

        def parse(text: str | None) -> Any:  # a logged input or output: JSON text
            return None if text is None else json.loads(text)

        frame = requests(endpoint) if log is None else log
        if endpoint is not None:
            frame = frame[frame["endpoint"] == endpoint]
        frame = frame[frame["status"] == 200]
        if (lowest is None) != (by is None):
            raise DatasetError(
                f"from_requests(lowest={lowest!r}, by={by!r}): pass both, e.g."
                " lowest=20, by='faithfulness'"
            )
        live: dict[str, float] = {}
        if by is not None:
            frame, live = _lowest(frame, int(lowest or 0), by)
        records: list[dict[str, Any]] = []
        for row in frame.itertuples():
            try:
                given, answered = parse(str(row.input)), parse(str(row.output))
            except ValueError:  # clipped: too long to keep whole
                continue
            if row.kind == "batch":
                pairs = [
                    (f"{row.request_id}#{i}", one, out.get("output"))
                    for i, (one, out) in enumerate(
                        zip(given.get("inputs", []), answered.get("outputs", []), strict=False)
                    )
                    if out.get("error") is None
                ]
            else:
                pairs = [(str(row.request_id), given, answered)]
            for item_id, request, output in pairs:
                metadata = {"endpoint": row.endpoint, "time": str(row.time)}
                if by is not None:
                    metadata[by] = live[str(row.request_id)]
                value: Any = request
                if input_field is not None:
                    if not isinstance(request, Mapping) or input_field not in request:
                        raise DatasetError(
                            f"request {item_id} has no field {input_field!r}; pick one of"
                            f" {', '.join(request) if isinstance(request, Mapping) else 'none'}"
                        )
                    value = request[input_field]
                    metadata |= {k: v for k, v in request.items() if k != input_field}
                records.append(
                    {
                        "id": item_id,
                        "input": value,
                        "expected": output if expected_from_output else None,
                        **metadata,
                    }
                )
        if n is not None and n < len(records):
            records = sorted(random.Random(seed).sample(records, n), key=lambda r: r["id"])
        label = name or ("requests" if endpoint is None else f"requests-{endpoint}")
        if not records:
            return cls((), name=label)
        return cls.from_records(records, name=label)

    def to_df(self) -> pd.DataFrame:
        """One row per item: id, input, expected, then the metadata columns."""
        import pandas as pd

        return pd.DataFrame(
            [{"id": i.id, "input": i.input, "expected": i.expected, **i.metadata} for i in self]
        )


def _lowest(frame: pd.DataFrame, lowest: int, by: str) -> tuple[pd.DataFrame, dict[str, float]]:
    """The `lowest` rows by their live score `by` (lowest first), and each one's score."""
    if lowest < 1:
        raise DatasetError(f"from_requests(lowest={lowest}): pass a positive count, e.g. 20")
    if frame.empty:
        return frame, {}
    values = (
        frame["scores"].map(lambda s: s.get(by) if isinstance(s, Mapping) else None)
        if "scores" in frame.columns
        else None
    )
    if values is None or values.isna().all():
        raise DatasetError(
            f"no answered request has a live {by!r} score; serve the endpoint with"
            f" `aikit api --score {by}` (or @aikit.endpoint(score=[...])) and call it first"
        )
    scored = frame.assign(_score=values.astype(float)).dropna(subset=["_score"])
    picked = scored.sort_values(["_score", "time"], kind="stable").head(lowest)
    return picked.drop(columns="_score"), dict(
        zip(picked["request_id"].astype(str), picked["_score"].astype(float), strict=True)
    )


def _build(numbered: list[tuple[int, Any]], *, name: str, where: str) -> Dataset:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for number, record in numbered:
        if not isinstance(record, Mapping):
            raise DatasetError(
                f"{where} row {number}: expected an object with 'input', got"
                f" {type(record).__name__} {record!r:.40}"
            )
        if "input" not in record or _missing(record["input"]):
            keys = ", ".join(map(str, record)) or "none"
            raise DatasetError(
                f"{where} row {number}: no 'input' (keys: {keys}); every row needs one"
            )
        raw_id = record.get("id")
        item_id = str(number) if _missing(raw_id) else str(raw_id)
        if item_id in seen:
            raise DatasetError(
                f"{where} row {number}: id {item_id!r} repeats row {seen[item_id]};"
                " ids must be unique"
            )
        seen[item_id] = number
        expected = record.get("expected")
        metadata = {str(k): v for k, v in record.items() if k not in ("id", "input", "expected")}
        items.append(
            Item(item_id, record["input"], None if _missing(expected) else expected, metadata)
        )
    return Dataset(tuple(items), name=name)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value == ""


def _read(file: Path) -> str:
    return read_text(file, what="dataset", error=DatasetError)


def as_dataset(data: Dataset | pd.DataFrame | Sequence[Any]) -> Dataset:
    """A Dataset from a Dataset, a DataFrame, a list of dicts, or a list of bare inputs."""
    if isinstance(data, Dataset):
        return data
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return Dataset.from_df(data)
    records = [r if isinstance(r, Mapping) else {"input": r} for r in data]
    return Dataset.from_records(records)
