"""Semantic cache lookup latency at 10K, 100K (and 1M) entries, query embedding included.

    python -m benchmarks.cache_scale [--sizes 10000 100000] [--queries 200] [--json]

The table holds synthetic entries for size (random unit vectors; times, token counts and
renters varied as in a real cache) plus the real embeddings of the dev workload's
first prompt per group; probes are the other prompts of those groups, looked up through
``SemanticCache.lookup`` (MiniLM embedding + LanceDB search + guard). Candidate: the IVF_PQ index
the cache builds past ``index_min_rows``; baseline: the flat scan of the same table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cache_eval import (
    CUT_PARAMS_KEY,
    DEFAULT_DATA,
    DEFAULT_MODEL,
    MODEL_ID,
    PARAMS_KEY,
    load_workload,
)
from fabstir.cache import Embedder, SemanticCache
from fabstir.cache.semantic import exact_key

_BATCH = 50_000


def load_probes(data: Path, queries: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The workload's first prompt of each paraphrase group (stored) and up to ``queries`` of
    the groups' other prompts (looked up)."""
    seeds: dict[str, dict[str, str]] = {}
    probes = []
    for row in load_workload(data):
        if row["kind"] in ("paraphrase", "exact"):
            if row["group"] in seeds:
                probes.append(row)
            else:
                seeds[row["group"]] = row
    return list(seeds.values()), probes[:queries]


def fill_synthetic(cache: SemanticCache, size: int, seeds: list[dict[str, str]]) -> None:
    """Fill the table with ``size`` entries: synthetic ones and the seeds' real embeddings."""
    rng = np.random.default_rng(0)
    dimension = cache.embedder.dimension
    now = time.time()
    for start in range(0, size - len(seeds), _BATCH):
        count = min(_BATCH, size - len(seeds) - start)
        vectors = rng.normal(size=(count, dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        # Stored over the last day, with answers of varied length from many renters, as a real
        # cache's rows are. Constant columns would be run-length encoded, and reading a few
        # rows of one costs ~2 ms more per column at 1M rows than of a column of varied values.
        created_at = now - rng.uniform(0, 86_400, size=count)
        completion_tokens = rng.integers(1, 512, size=count)
        renters = rng.integers(0, 1_000, size=count)
        cache._table.add(
            [
                {
                    "key": f"synthetic-{start + n}",
                    "model_id": MODEL_ID,
                    "params_key": PARAMS_KEY,
                    "prompt": f"synthetic prompt {start + n}",
                    "answer_text": f"synthetic answer {start + n}",
                    "completion_tokens": int(completion_tokens[n]),
                    "renter": f"0x{renters[n]:040x}",
                    "created_at": float(created_at[n]),
                    "last_used_at": float(created_at[n]),
                    "vector": vectors[n],
                }
                for n in range(count)
            ]
        )
    vectors = cache.embedder.embed([row["prompt"] for row in seeds])
    cache._table.add(
        [
            {
                "key": exact_key(MODEL_ID, row["prompt"], PARAMS_KEY),
                "model_id": MODEL_ID,
                "params_key": PARAMS_KEY,
                "prompt": row["prompt"],
                "answer_text": row["group"],
                "completion_tokens": 1,
                "renter": "0xbench",
                "created_at": now,
                "last_used_at": now,
                "vector": vector,
            }
            for row, vector in zip(seeds, vectors, strict=True)
        ]
    )


def probe_lookups(cache: SemanticCache, probes: list[dict[str, str]]) -> dict[str, Any]:
    latencies_ms, right = [], 0
    for row in probes:
        started = time.perf_counter()
        hit = cache.lookup(MODEL_ID, row["prompt"], PARAMS_KEY, CUT_PARAMS_KEY)
        latencies_ms.append((time.perf_counter() - started) * 1000)
        right += hit is not None and hit.answer_text == row["group"]
    return {
        "queries": len(probes),
        "p50_ms": float(np.percentile(latencies_ms, 50)),
        "p99_ms": float(np.percentile(latencies_ms, 99)),
        "right_hits": right,
    }


def run_size(
    embedder: Embedder, size: int, seeds: list[dict[str, str]], probes: list[dict[str, str]]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        cache = SemanticCache(directory, embedder, 0.9, index_min_rows=min(size, 10_000))
        started = time.perf_counter()
        fill_synthetic(cache, size, seeds)
        cache._table.optimize()
        fill_s = time.perf_counter() - started
        flat = probe_lookups(cache, probes[: max(20, len(probes) // 4)])
        started = time.perf_counter()
        cache.ensure_index()
        index_s = time.perf_counter() - started
        indexed = probe_lookups(cache, probes)
        cache.close()
    return {"size": size, "fill_s": fill_s, "index_s": index_s, "flat": flat, "ivf_pq": indexed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache_scale", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="Probe lookups per size.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSONL workload.")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="MiniLM GGUF.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object last.")
    args = parser.parse_args(argv)
    if any(size < 1_000 for size in args.sizes):
        parser.error("--sizes must each be at least 1000")
    if args.queries < 1:
        parser.error(f"--queries must be at least 1, got {args.queries}")
    seeds, probes = load_probes(args.data, args.queries)
    embedder = Embedder(args.model)
    results = [run_size(embedder, size, seeds, probes) for size in args.sizes]
    print("lookup latency (embedding + search + guard), ms; baseline flat scan, candidate IVF_PQ")
    for r in results:
        flat, ivf = r["flat"], r["ivf_pq"]
        print(
            f"{r['size']:>9} rows  fill {r['fill_s']:.1f} s  index {r['index_s']:.1f} s  "
            f"flat p50/p99 {flat['p50_ms']:.1f}/{flat['p99_ms']:.1f} ({flat['queries']} q)  "
            f"IVF_PQ p50/p99 {ivf['p50_ms']:.1f}/{ivf['p99_ms']:.1f} ({ivf['queries']} q, "
            f"{ivf['right_hits']} right hits)  p99 ratio {flat['p99_ms'] / ivf['p99_ms']:.1f}x"
        )
    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    if args.json:
        print(json.dumps({"sizes": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
