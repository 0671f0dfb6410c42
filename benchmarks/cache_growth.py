"""Cache lookup latency as a table grows store by store, and after a maintenance pass.

    python -m benchmarks.cache_growth [--size 100000] [--stores 512] [--every 128] [--json]

The table is filled as ``benchmarks.cache_scale`` fills it and indexed in bulk (the baseline);
then ``--stores`` single answers are stored through ``SemanticCache.store``, which indexes each
row and merges the small fragments as jobs' stores do, and the probes are looked up again every
``--every`` stores. Each store follows the lookup of a probe, as a host stores after a miss:
those lookups, interleaved with the stores, are a stage's "interleaved" figures.
Last, one pass of the cache-maintenance flow's work (``SemanticCache.maintain``), and the probes
once more.
"""

from __future__ import annotations

import argparse
import json
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
)
from benchmarks.cache_scale import fill_synthetic, load_probes, probe_lookups
from fabstir.cache import Embedder, SemanticCache


def _stage(cache: SemanticCache, label: str, stores: int, probes: list[dict[str, str]]) -> dict:
    figures = probe_lookups(cache, probes)
    stats = cache._table.index_stats("vector_idx")
    fragments = cache._table.stats()["fragment_stats"]["num_fragments"]
    return {
        "stage": label,
        "stores": stores,
        "index_segments": stats.num_indices,
        "unindexed_rows": stats.num_unindexed_rows,
        "fragments": fragments,
        **figures,
    }


def run(
    embedder: Embedder, size: int, stores: int, every: int, data: Path, queries: int
) -> dict[str, Any]:
    seeds, probes = load_probes(data, queries)
    stages = []
    with tempfile.TemporaryDirectory() as directory:
        cache = SemanticCache(directory, embedder, 0.9, index_min_rows=min(size, 10_000))
        fill_synthetic(cache, size, seeds)
        cache._table.optimize()
        cache.ensure_index()
        stages.append(_stage(cache, "bulk", 0, probes))
        store_ms: list[float] = []
        interleaved_ms: list[float] = []
        for n in range(1, stores + 1):
            probe = probes[(n - 1) % len(probes)]["prompt"]
            started = time.perf_counter()
            cache.lookup(MODEL_ID, probe, PARAMS_KEY, CUT_PARAMS_KEY)
            interleaved_ms.append((time.perf_counter() - started) * 1000)
            prompt = f"question number {n} stored by a job after the bulk fill"
            started = time.perf_counter()
            cache.store(MODEL_ID, prompt, PARAMS_KEY, "an answer", 3, renter="0xbench")
            store_ms.append((time.perf_counter() - started) * 1000)
            if n % every == 0 or n == stores:
                stage = _stage(cache, "grown", n, probes)
                stage["interleaved_p50_ms"] = float(np.percentile(interleaved_ms, 50))
                stage["interleaved_p99_ms"] = float(np.percentile(interleaved_ms, 99))
                stages.append(stage)
                interleaved_ms = []
        started = time.perf_counter()
        done = cache.maintain()
        maintenance_s = time.perf_counter() - started
        stages.append(_stage(cache, "maintained", stores, probes))
        cache.close()
    return {
        "size": size,
        "store_p50_ms": float(np.percentile(store_ms, 50)),
        "store_max_ms": max(store_ms),
        "maintenance_s": maintenance_s,
        "index_retrained": done.index_retrained,
        "stages": stages,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache_growth", description=__doc__)
    parser.add_argument("--size", type=int, default=100_000, help="Entries filled in bulk.")
    parser.add_argument("--stores", type=int, default=512, help="Single stores after the fill.")
    parser.add_argument("--every", type=int, default=128, help="Stores between measurements.")
    parser.add_argument("--queries", type=int, default=150, help="Probe lookups per stage.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSONL workload.")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="MiniLM GGUF.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object last.")
    args = parser.parse_args(argv)
    if args.size < 10_000:
        parser.error("--size must be at least 10000 (the cache's default index threshold)")
    if args.stores < 1 or args.every < 1 or args.queries < 1:
        parser.error("--stores, --every and --queries must each be at least 1")
    result = run(Embedder(args.model), args.size, args.stores, args.every, args.data, args.queries)
    baseline = result["stages"][0]
    print(
        f"lookup latency (embedding + search + guard) at {result['size']} entries, ms; "
        "baseline: the bulk-indexed table"
    )
    for stage in result["stages"]:
        print(
            f"{stage['stage']:>10} after {stage['stores']:>5} stores  "
            f"segments {stage['index_segments']:>2}  fragments {stage['fragments']:>3}  "
            f"unindexed {stage['unindexed_rows']:>3}  "
            f"p50/p99 {stage['p50_ms']:.1f}/{stage['p99_ms']:.1f}  "
            f"p99 / baseline {stage['p99_ms'] / baseline['p99_ms']:.2f}  "
            f"({stage['right_hits']} right hits)"
            + (
                f"  interleaved with the stores p50/p99 {stage['interleaved_p50_ms']:.1f}/"
                f"{stage['interleaved_p99_ms']:.1f}"
                if "interleaved_p50_ms" in stage
                else ""
            )
        )
    print(
        f"store (embedding, write, indexing, compaction): p50 {result['store_p50_ms']:.0f} ms, "
        f"max {result['store_max_ms']:.0f} ms"
    )
    print(
        f"maintenance pass: {result['maintenance_s']:.1f} s, "
        f"index retrained: {result['index_retrained']}"
    )
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
