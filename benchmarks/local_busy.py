"""The embedded model on a busy machine: llama.cpp's OpenMP threads against CPU-bound neighbours.

llama.cpp (built with OpenMP) runs each decode step on every core, and its threads meet at a
barrier after each step. libgomp lets a waiting thread spin for `GOMP_SPINCOUNT` iterations
(300,000 by default) before it sleeps. On a quiet machine spinning is what makes a step fast;
when other processes hold the cores, a spinning thread burns its time slice while the thread it
waits for is not running, and every step stalls for whole scheduler slices.

This script answers the same 12 short prompts with bare llama-cpp-python on Gemma 3 270M (all
cores, temperature 0), in a fresh process per setting: the default, each `GOMP_SPINCOUNT`
given, and `threads by load`: libgomp's default with aikit's server's `ThreadsByLoad`
installed on the model (`aikit/local/_threads.py`: each decode call on the cores other
processes leave free), first on a quiet machine, then with `--burners` CPU-bound processes (a
busy loop each) beside it; each round runs every setting once, in turn, and the medians over
`--rounds` are printed with the ratios to the default, quiet and loaded, side by side (loaded
figures jump between runs: a stall is whole scheduler slices, so read the median of several
rounds).

    .venv/bin/python benchmarks/local_busy.py [--burners 2] [--spincounts 20000]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys

ANSWER = r"""
import sys, time
import llama_cpp
from aikit.local import model_path
llama = llama_cpp.Llama(model_path=str(model_path("gemma-3-270m")), n_ctx=1024,
                        n_threads=int(sys.argv[1]), n_threads_batch=int(sys.argv[1]),
                        verbose=False)
if sys.argv[2] == "by-load":
    import time as _t
    from aikit.local._threads import ThreadsByLoad
    ThreadsByLoad(llama)
    _t.sleep(1.0)  # the watch's first second of samples
prompts = [f"Review: order {i} was {'great' if i % 2 else 'awful'}.\nPositive or negative?\n"
           "Answer:" for i in range(12)]
llama(prompts[0], max_tokens=4, temperature=0)  # warm-up
started = time.perf_counter()
for prompt in prompts:
    llama.reset()
    llama(prompt, max_tokens=12, temperature=0)
print(time.perf_counter() - started)
"""


def burn() -> None:
    while True:
        pass


BY_LOAD = "threads by load"


def seconds(setting: str | None) -> float:
    env = dict(os.environ)
    env.pop("GOMP_SPINCOUNT", None)
    if setting not in (None, BY_LOAD):
        env["GOMP_SPINCOUNT"] = setting
    done = subprocess.run(
        [sys.executable, "-c", ANSWER, str(os.cpu_count() or 1), _mode(setting)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def _mode(setting: str | None) -> str:
    return "by-load" if setting == BY_LOAD else "fixed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--spincounts", default="20000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings: list[str | None] = [None, *filter(None, args.spincounts.split(",")), BY_LOAD]

    def medians() -> dict[str | None, float]:
        runs = [{s: seconds(s) for s in settings} for _ in range(args.rounds)]
        return {s: statistics.median(r[s] for r in runs) for s in settings}

    quiet = medians()
    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.burners)]
    for process in burners:
        process.start()
    try:
        loaded = medians()
    finally:
        for process in burners:
            process.kill()
    print(
        f"12 answers, Gemma 3 270M, {os.cpu_count()} threads; loaded: {args.burners} burners;"
        f" medians of {args.rounds} rounds"
    )
    print(
        f"{'setting':16} {'quiet s':>8} {'loaded s':>9} {'quiet/default':>14}"
        f" {'loaded/default':>15} {'loaded/quiet':>13}"
    )
    for s in settings:
        print(
            f"{s or 'default':16} {quiet[s]:8.2f} {loaded[s]:9.2f} {quiet[s] / quiet[None]:14.2f}"
            f" {loaded[s] / loaded[None]:15.2f} {loaded[s] / quiet[s]:13.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
