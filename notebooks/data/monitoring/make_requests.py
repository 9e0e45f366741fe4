"""Make the example request log that `04_monitoring.ipynb` plots when its own `AIKIT_HOME` has
logged no requests yet (a fresh clone): `requests.jsonl`, one request a line, with the
columns of `aikit.requests()` that section 6 reads.

An illustration, not a measurement: twelve hours of traffic to 05_serving's `ask` endpoint
(the RAG answer over the knowledge base, on the embedded model, so no cost), drawn from a
seeded random generator, so the file is the same on every run: more requests around midday,
latency that grows with them, and one bad hour (13:00 UTC) in which a third of the requests
fail with status 503 (as when the model server restarts). Run it from the repository root:

    .venv/bin/python notebooks/data/monitoring/make_requests.py
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
START = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
HOURS = 12
BAD_HOUR = 5  # 13:00 UTC


def main() -> None:
    rng = random.Random(25)
    rows = []
    for hour in range(HOURS):
        busy = math.sin(math.pi * (hour + 0.5) / HOURS)  # 0 at the ends, 1 at midday
        for _ in range(int(12 + 36 * busy)):
            when = START + timedelta(hours=hour, seconds=rng.uniform(0, 3600))
            latency = rng.lognormvariate(math.log(0.35 + 0.25 * busy), 0.45)
            failed = hour == BAD_HOUR and rng.random() < 0.33
            completion = 0 if failed else rng.randint(20, 64)
            rows.append(
                {
                    "time": when.isoformat(timespec="milliseconds"),
                    "endpoint": "ask",
                    "status": 503 if failed else 200,
                    "latency_s": round(min(latency, 10.0) if not failed else 0.002, 4),
                    "model": "gemma-3-270m",
                    "calls": 0 if failed else 1,
                    "prompt_tokens": 0 if failed else rng.randint(380, 620),
                    "completion_tokens": completion,
                    "cost_usd": None if failed else 0.0,
                }
            )
    rows.sort(key=lambda r: str(r["time"]))
    out = HERE / "requests.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} requests over {HOURS} hours -> {out}")


if __name__ == "__main__":
    main()
