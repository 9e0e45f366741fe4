"""The judge variant of the claim test: `evals.faithfulness`'s claim judge on the test split of
`notebooks/data/evals/claims.jsonl`, the split the offline test is reported on.

One verdict per claim, one request at a time, through the response store (AIKIT_CACHE, `on` by
default), so a second run replays what the first one asked. Prints accuracy, Cohen's kappa and
the share right per kind, with 95% intervals (`evals.claim_report`), and the load average.

    .venv/bin/python benchmarks/claims_judge.py                  # the embedded model (Gemma 3)
    AIKIT_MODEL=smollm2-135m-instruct .venv/bin/python benchmarks/claims_judge.py

A hosted model is replayed from a cassette when one is there (`--cassette`, default
`benchmarks/cassettes/claims_judge_hosted.jsonl`; its model and endpoint are read from it, so a
replay needs no network and no key); record one where the model is reachable with
`--record PATH --model NAME` (a fresh store, exported to PATH; no key is stored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "notebooks" / "data" / "evals" / "claims.jsonl"
HOSTED = ROOT / "benchmarks" / "cassettes" / "claims_judge_hosted.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="judge model (default: AIKIT_MODEL)")
    parser.add_argument("--split", default="test", choices=["test", "calibration"])
    parser.add_argument("--limit", type=int, default=None, help="first N claims only")
    parser.add_argument(
        "--cassette", type=Path, nargs="?", const=HOSTED, default=None, help="replay a cassette"
    )
    parser.add_argument("--record", type=Path, default=None, help="record into this cassette")
    args = parser.parse_args()
    if args.cassette is not None and args.record is not None:
        print("pass --cassette (replay) or --record (record), not both", file=sys.stderr)
        return 2
    if args.cassette is not None:
        if not args.cassette.is_file():
            print(
                f"no cassette at {args.cassette}: record one where the hosted model is reachable"
                " with --record PATH --model NAME",
                file=sys.stderr,
            )
            return 2
        # The model and endpoint it was recorded with: replay needs no network and no key.
        first = json.loads(args.cassette.read_text(encoding="utf-8").splitlines()[0])["request"]
        args.model = args.model or first["model"]
        os.environ.update(AIKIT_CACHE="replay", AIKIT_CASSETTES=str(args.cassette.resolve()))
        if first["endpoint"] != "aikit-local":
            os.environ.update(AIKIT_PROVIDER="openai", OPENAI_BASE_URL=first["endpoint"])
            os.environ.setdefault("OPENAI_API_KEY", "replay-needs-no-key")
    elif args.record is not None:
        os.environ["AIKIT_HOME"] = tempfile.mkdtemp(prefix="claims-judge-")
        os.environ["AIKIT_CACHE"] = "record"
    elif HOSTED.is_file():
        print(f"(a hosted-model cassette is at {HOSTED}: replay it with --cassette)")
    os.chdir(ROOT)
    from aikit import evals
    from aikit.cache import store_at
    from aikit.settings import get_settings

    rows = evals.load_claims(CLAIMS, split=args.split)[: args.limit]
    judge = evals.judge("(the claim rubric replaces this)", model=args.model)
    settings = get_settings()
    model = args.model or settings.model
    print(f"judge {model} ({settings.provider}, cache {settings.cache}) on {len(rows)} claims")
    start = time.perf_counter()
    report = evals.claim_report(rows, split=None, judge=judge)
    took = time.perf_counter() - start
    print(report)
    load = os.getloadavg()
    print(f"{took:.0f} s ({took / len(rows):.1f} s a claim), load average {load[0]:.2f}")
    if args.record is not None:
        count = store_at(settings.cache_path).export(args.record)
        print(f"recorded {count} answers into {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
