"""TTL, size bound, renter erasure, the ANN index threshold and the temperature bypass."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fabstir.cache import SemanticCache, answer_reusable
from fabstir.cache.semantic import exact_key
from fabstir.errors import ConfigError, TransientError
from fabstir.pipeline.answer import cache_params_key, cut_answer_key

PARAMS = cache_params_key()
CUT = cut_answer_key(PARAMS, 8)
MODEL = "model"
RENTER = "0x" + "ab" * 20


class Clock:
    """A settable clock: TTLs span days, which a test cannot wait for."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _cache(tmp_path: Path, embedder: Any, clock: Clock, **bounds: Any) -> SemanticCache:
    return SemanticCache(
        str(tmp_path / "cache"), embedder, similarity_threshold=0.8, clock=clock, **bounds
    )


def _store(cache: SemanticCache, prompt: str, renter: str = RENTER) -> None:
    cache.store(MODEL, prompt, PARAMS, f"answer to {prompt}", 3, renter=renter)


def test_entries_expire_after_the_ttl(tmp_path: Path, fake_embedder: Any) -> None:
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock, ttl_s=60)
    _store(cache, "What is the capital of France?")
    clock.now += 59
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    assert cache.lookup(MODEL, "what is the capital city of France", PARAMS) is not None
    clock.now += 2
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is None
    assert cache.lookup(MODEL, "what is the capital city of France", PARAMS) is None
    assert cache.expire() == 1
    assert cache._table.count_rows() == 0


def test_the_least_recently_used_entries_are_evicted_beyond_the_bound(
    tmp_path: Path, fake_embedder: Any
) -> None:
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock, max_entries=3)
    for n in range(5):
        clock.now += 1
        _store(cache, f"question number {n}")
    assert cache.evict() == 2
    assert cache.lookup(MODEL, "question number 0", PARAMS) is None
    assert cache.lookup(MODEL, "question number 1", PARAMS) is None
    assert cache.lookup(MODEL, "question number 4", PARAMS) is not None
    assert cache.evict() == 0


def test_a_hit_keeps_an_old_entry_and_the_newer_unused_one_is_evicted(
    tmp_path: Path, fake_embedder: Any
) -> None:
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock, max_entries=2)
    _store(cache, "What is the capital of France?")
    clock.now += 10
    _store(cache, "How do I boil an egg?")
    clock.now += 10
    hit = cache.lookup(MODEL, "what is the capital city of France", PARAMS)  # a semantic hit
    assert hit is not None and hit.kind == "semantic"
    clock.now += 10
    _store(cache, "Why is the sky blue?")
    assert cache.evict() == 1
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    assert cache.lookup(MODEL, "How do I boil an egg?", PARAMS) is None
    assert cache.lookup(MODEL, "Why is the sky blue?", PARAMS) is not None


def test_uses_noted_by_one_process_order_eviction_in_another(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fabstir.cache.semantic._WRITE_USES_EVERY", 1)
    clock = Clock()
    reader = _cache(tmp_path, fake_embedder, clock, max_entries=1)
    _store(reader, "What is the capital of France?")
    clock.now += 10
    _store(reader, "How do I boil an egg?")
    clock.now += 10
    assert reader.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    evictor = _cache(tmp_path, fake_embedder, clock, max_entries=1)  # its own pending uses: none
    assert evictor.evict() == 1
    assert evictor.lookup(MODEL, "What is the capital of France?", PARAMS) is not None


def test_a_hit_does_not_extend_the_ttl(tmp_path: Path, fake_embedder: Any) -> None:
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock, ttl_s=60)
    _store(cache, "What is the capital of France?")
    clock.now += 50
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    cache.evict()  # writes the use
    clock.now += 11
    assert cache.expire() == 1


def test_a_table_from_before_lru_is_upgraded_in_place(tmp_path: Path, fake_embedder: Any) -> None:
    import lancedb
    import pyarrow as pa

    old = pa.schema(
        [
            *(pa.field(name, pa.string()) for name in ("key", "model_id", "params_key", "prompt")),
            pa.field("answer_text", pa.string()),
            pa.field("completion_tokens", pa.int64()),
            pa.field("renter", pa.string()),
            pa.field("created_at", pa.float64()),
            pa.field("vector", pa.list_(pa.float32(), fake_embedder.dimension)),
        ]
    )
    lancedb.connect(str(tmp_path / "cache")).create_table("semantic_cache", schema=old)
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock, max_entries=1)
    _store(cache, "What is the capital of France?")
    clock.now += 1
    _store(cache, "How do I boil an egg?")
    assert cache.evict() == 1
    assert cache.lookup(MODEL, "How do I boil an egg?", PARAMS) is not None


def test_maintenance_applies_ttl_and_bound_and_stores_compaction_does_not(
    tmp_path: Path, fake_embedder: Any
) -> None:
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock, max_entries=2, ttl_s=100)
    _store(cache, "What is the capital of France?")
    clock.now += 101
    for n in range(3):
        clock.now += 1
        _store(cache, f"question number {n}")
    assert cache.compact().entries == 4  # a deletion would slow every lookup until rewritten
    done = cache.maintain()
    assert (done.expired, done.evicted, done.entries) == (1, 1, 2)
    assert sorted(row["prompt"] for row in cache._table.search().to_list()) == [
        "question number 1",
        "question number 2",
    ]


def test_writers_in_separate_processes_share_the_compaction(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two handles on one directory stand for two processes: each counts nothing of the other's.
    monkeypatch.setattr("fabstir.cache.semantic._SMALL_FRAGMENTS", 4)
    clock = Clock()
    first = _cache(tmp_path, fake_embedder, clock)
    second = _cache(tmp_path, fake_embedder, clock)
    for n in range(3):  # fewer stores per writer than _SMALL_FRAGMENTS
        _store(first, f"first writer's question {n}")
        _store(second, f"second writer's question {n}")
    reader = _cache(tmp_path, fake_embedder, clock)
    assert reader._table.count_rows() == 6
    # One per store until the fourth store's compaction merged them, then two more.
    assert len(reader._latest_dataset().get_fragments()) == 3


def test_a_long_lived_handle_sees_other_writers_stores_and_erasures(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fabstir.cache.semantic._READ_CONSISTENCY", timedelta(seconds=0.1))
    server = _cache(tmp_path, fake_embedder, Clock())  # e.g. the API server, open for days
    worker = _cache(tmp_path, fake_embedder, Clock())  # e.g. one job's flow process
    assert server.lookup(MODEL, "What is the capital of France?", PARAMS) is None
    _store(worker, "What is the capital of France?")
    time.sleep(0.15)
    hit = server.lookup(MODEL, "what is the capital city of France", PARAMS)
    assert hit is not None and hit.cached_prompt == "What is the capital of France?"
    assert worker.erase_renter(RENTER) == 1
    time.sleep(0.15)
    assert server.lookup(MODEL, "What is the capital of France?", PARAMS) is None
    assert server.lookup(MODEL, "what is the capital city of France", PARAMS) is None


def test_erasure_removes_every_entry_of_the_renter(tmp_path: Path, fake_embedder: Any) -> None:
    cache = _cache(tmp_path, fake_embedder, Clock())
    other = "0x" + "cd" * 20
    _store(cache, "What is the capital of France?")
    _store(cache, "How do I boil an egg?", renter=RENTER.upper().replace("0X", "0x"))
    _store(cache, "Why is the sky blue?", renter=other)
    assert cache.erase_renter(RENTER) == 2
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is None
    assert cache.lookup(MODEL, "How do I boil an egg?", PARAMS) is None
    assert cache.lookup(MODEL, "Why is the sky blue?", PARAMS) is not None
    assert cache.erase_renter("x' OR '1'='1") == 0
    assert cache._table.count_rows() == 1


def _add_synthetic_rows(cache: SemanticCache, count: int, first: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(first)
    rows = []
    for n in range(first, first + count):
        vector = rng.normal(size=cache.embedder.dimension).astype(np.float32)
        rows.append(
            {
                "key": f"k{n}",
                "model_id": MODEL,
                "params_key": PARAMS,
                "prompt": f"synthetic {n}",
                "answer_text": "x",
                "completion_tokens": 1,
                "renter": RENTER,
                "created_at": 1_000_000.0,
                "vector": vector / np.linalg.norm(vector),
            }
        )
    cache._table.add(rows)


def _indexed_cache(tmp_path: Path, embedder: Any, clock: Clock | None = None) -> SemanticCache:
    """A cache of 300 synthetic entries with its indexes built."""
    cache = _cache(tmp_path, embedder, clock or Clock(), index_min_rows=256)
    _add_synthetic_rows(cache, 300)
    cache.compact()
    return cache


def test_an_ann_index_is_built_past_the_threshold(tmp_path: Path, fake_embedder: Any) -> None:
    cache = _cache(tmp_path, fake_embedder, Clock(), index_min_rows=256)
    assert cache.ensure_index() is False
    _add_synthetic_rows(cache, 300)
    _store(cache, "What is the capital of France?")
    assert cache.ensure_index() is True
    indexes = {tuple(i.columns): i.index_type for i in cache._table.list_indices()}
    assert indexes == {
        ("vector",): "IvfPq",
        ("key",): "BTree",
        ("model_id",): "Bitmap",
        ("params_key",): "Bitmap",
    }
    assert cache.ensure_index() is True  # kept, not rebuilt
    assert len(cache._table.list_indices()) == 4
    hit = cache.lookup(MODEL, "what is the capital city of France", PARAMS)
    assert hit is not None and hit.cached_prompt == "What is the capital of France?"
    # The exact level goes through the key's index.
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None


def test_indexes_are_prewarmed_when_built_and_when_the_cache_opens(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lance import LanceDataset

    prewarmed: list[str] = []
    prewarm_index = LanceDataset.prewarm_index

    def recording_prewarm(dataset: LanceDataset, name: str) -> None:
        prewarmed.append(name)
        prewarm_index(dataset, name)

    monkeypatch.setattr(LanceDataset, "prewarm_index", recording_prewarm)
    cache = _cache(tmp_path, fake_embedder, Clock(), index_min_rows=256)
    assert prewarmed == []  # nothing to load yet
    _add_synthetic_rows(cache, 300)
    _store(cache, "What is the capital of France?")
    assert cache.ensure_index() is True
    names = sorted(index.name for index in cache._table.list_indices())
    assert sorted(prewarmed) == names and len(names) == 4
    assert cache.ensure_index() is True  # already built: nothing reloaded
    assert len(prewarmed) == 4

    prewarmed.clear()
    reopened = _cache(tmp_path, fake_embedder, Clock(), index_min_rows=256)
    assert sorted(prewarmed) == names
    hit = reopened.lookup(MODEL, "what is the capital city of France", PARAMS)
    assert hit is not None and hit.cached_prompt == "What is the capital of France?"


def _vector_index_partitions(cache: SemanticCache) -> list[int]:
    """Each segment's partition count: one entry per segment."""
    stats = cache._latest_dataset().stats.index_stats("vector_idx")
    return [segment["num_partitions"] for segment in stats["indices"]]


def _first_segments(cache: SemanticCache) -> dict[str, str]:
    """Each index's first segment, the one maintenance builds."""
    indexes = cache._latest_dataset().describe_indices()
    return {index.name: index.segments[0].uuid for index in indexes}


def _segment_counts(cache: SemanticCache) -> dict[str, int]:
    return {i.name: len(i.segments) for i in cache._latest_dataset().describe_indices()}


def test_compaction_indexes_new_rows_into_the_second_segment_and_leaves_large_fragments(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fabstir.cache.semantic._FRAGMENT_ROWS", 200)
    clock = Clock()
    cache = _indexed_cache(tmp_path, fake_embedder, clock)
    (large,) = [f.fragment_id for f in cache._latest_dataset().get_fragments()]
    first = _first_segments(cache)
    for round_ in range(3):
        clock.now += 1
        for n in range(3):
            _store(cache, f"question {n} of round {round_}")
        done = cache.compact()
        assert done.entries == 300 + 3 * (round_ + 1) and done.fragments <= 3
        assert set(_segment_counts(cache).values()) == {2}
        assert _first_segments(cache) == first  # remapping left the large one alone too
        stats = cache._table.index_stats("vector_idx")
        assert (stats.num_indices, stats.num_unindexed_rows) == (2, 0)
    fragments = {f.fragment_id: f.count_rows() for f in cache._latest_dataset().get_fragments()}
    assert fragments[large] == 300  # never rewritten for the few rows added after it
    assert sum(fragments.values()) == 309
    hit = cache.lookup(MODEL, "question 1 of round 2", PARAMS)
    assert hit is not None and hit.kind == "exact"
    hit = cache.lookup(MODEL, "what is question 2 of round 0", PARAMS)
    assert hit is not None and hit.kind == "semantic"
    assert hit.cached_prompt == "question 2 of round 0"


def test_a_store_into_an_indexed_table_indexes_its_row_at_once(
    tmp_path: Path, fake_embedder: Any
) -> None:
    cache = _indexed_cache(tmp_path, fake_embedder)
    _store(cache, "What is the capital of France?")
    stats = cache._table.index_stats("vector_idx")
    assert (stats.num_indices, stats.num_indexed_rows, stats.num_unindexed_rows) == (2, 301, 0)
    hit = cache.lookup(MODEL, "what is the capital city of France", PARAMS)
    assert hit is not None and (hit.kind, hit.cached_prompt) == (
        "semantic",
        "What is the capital of France?",
    )


def test_stores_index_rows_into_second_segments_that_maintenance_merges(
    tmp_path: Path, fake_embedder: Any
) -> None:
    # Merging a row into an index rewrote all of it (the vector index ~0.2 s at 1M entries), and
    # every reader then loaded the rewritten index again.
    cache = _indexed_cache(tmp_path, fake_embedder)
    first = _first_segments(cache)
    assert set(first) == {"key_idx", "model_id_idx", "params_key_idx", "vector_idx"}
    prompts = ["What is the capital of France?", "How do I boil an egg?", "Why is the sky blue?"]
    for prompt in prompts:
        _store(cache, prompt)
        assert set(_segment_counts(cache).values()) == {2}
        assert _first_segments(cache) == first
    for name in first:
        assert cache._table.index_stats(name).num_unindexed_rows == 0, name
    for prompt in prompts:
        hit = cache.lookup(MODEL, prompt, PARAMS)
        assert hit is not None and (hit.kind, hit.cached_prompt) == ("exact", prompt)
    hit = cache.lookup(MODEL, "why is the sky so blue", PARAMS)
    assert hit is not None and (hit.kind, hit.cached_prompt) == ("semantic", "Why is the sky blue?")
    cache.maintain()
    assert set(_segment_counts(cache).values()) == {1}
    assert cache.lookup(MODEL, "Why is the sky blue?", PARAMS) is not None


def test_a_store_opens_its_new_index_segments_before_the_next_lookup(
    tmp_path: Path, fake_embedder: Any
) -> None:
    # Opening the vector index's new segment took 8-12 ms of the next lookup at 1M entries.
    cache = _indexed_cache(tmp_path, fake_embedder)
    for prompt in ["What is the capital of France?", "How do I boil an egg?"]:
        _store(cache, prompt)
        session = cache._reader().session()
        loaded = session.index_cache_size_bytes()
        hit = cache.lookup(MODEL, f"so, {prompt.lower()}", PARAMS)
        assert hit is not None and (hit.kind, hit.cached_prompt) == ("semantic", prompt)
        assert session.index_cache_size_bytes() == loaded  # nothing left to load


@pytest.mark.parametrize("failing", ["_nearest", "_has_vector_index"])
def test_a_store_is_kept_when_opening_its_new_segments_fails(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any, failing: str
) -> None:
    cache = _indexed_cache(tmp_path, fake_embedder)

    def failing_read(*args: Any, **kwargs: Any) -> None:  # a fake read fault: none to cause
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(cache, failing, failing_read)
    with caplog.at_level(logging.WARNING, logger="fabstir.cache.semantic"):
        _store(cache, "What is the capital of France?")
    assert "opening the cache's new index segments failed" in caplog.text
    hit = cache.lookup(MODEL, "What is the capital of France?", PARAMS)
    assert hit is not None and hit.kind == "exact"


def test_a_store_merges_any_newer_segments_into_the_second(
    tmp_path: Path, fake_embedder: Any
) -> None:
    cache = _indexed_cache(tmp_path, fake_embedder)
    first = _first_segments(cache)
    for n in range(2):  # as a writer indexing each row into a new segment of its own
        _add_synthetic_rows(cache, 1, first=300 + n)
        cache._latest_dataset().optimize.optimize_indices(num_indices_to_merge=0)
    assert set(_segment_counts(cache).values()) == {3}
    _store(cache, "What is the capital of France?")
    assert set(_segment_counts(cache).values()) == {2}
    assert _first_segments(cache) == first
    assert cache._table.index_stats("vector_idx").num_unindexed_rows == 0


def test_a_stores_compaction_leaves_the_first_segment_after_maintenance_passes(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compaction never merges fragments that different segments cover: a pass that compacted
    # before merging the segments left the stores' rows a small fragment under the first
    # segment, and once two passes had, a store's compaction merged them and rewrote it.
    monkeypatch.setattr("fabstir.cache.semantic._SMALL_FRAGMENTS", 4)
    cache = _indexed_cache(tmp_path, fake_embedder)
    for n in range(6):
        _store(cache, f"question number {n}")
        if n % 3 == 2:
            cache.maintain()
    first = _first_segments(cache)
    for n in range(6, 9):  # the third finds 4 small fragments and compacts
        _store(cache, f"question number {n}")
    assert _first_segments(cache) == first
    assert cache.lookup(MODEL, "question number 8", PARAMS) is not None


def test_storing_an_answer_again_changes_nothing(tmp_path: Path, fake_embedder: Any) -> None:
    cache = _indexed_cache(tmp_path, fake_embedder)
    _store(cache, "What is the capital of France?")

    def segments() -> list[str]:
        indexes = cache._latest_dataset().describe_indices()
        return [segment.uuid for index in indexes for segment in index.segments]

    stored = segments()
    _store(cache, "What is the capital of France?")
    assert segments() == stored  # the second segments not rewritten for no new row


def test_a_store_logs_no_warning_for_each_empty_partition(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # lance warns once per IVF partition a new segment has no row for: 122 lines a store at
    # 1M entries. A process of its own, as lance reads its log level when first imported.
    monkeypatch.setattr("fabstir.cache.semantic._ROWS_PER_PARTITION", 16)
    cache = _indexed_cache(tmp_path, fake_embedder)  # with ~19 partitions
    child = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import BagOfWordsEmbedder
from fabstir.cache import SemanticCache
cache = SemanticCache({str(tmp_path / "cache")!r}, BagOfWordsEmbedder(), 0.8)
cache.store("model", "What is the capital of France?", {PARAMS!r}, "Paris.", 2, renter="0xab")
"""
    env = {name: value for name, value in os.environ.items() if name != "LANCE_LOG"}
    done = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert _segment_counts(cache)["vector_idx"] == 2
    assert "is empty" not in done.stderr


def test_the_next_store_indexes_a_row_left_out_by_another_store(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As when another process's store lost the race to index its row.
    monkeypatch.setattr("fabstir.cache.semantic._READ_CONSISTENCY", timedelta(0))
    cache = _indexed_cache(tmp_path, fake_embedder)
    cache._table.add(
        [
            {
                "key": exact_key(MODEL, "What is the capital of France?", PARAMS),
                "model_id": MODEL,
                "params_key": PARAMS,
                "prompt": "What is the capital of France?",
                "answer_text": "Paris.",
                "completion_tokens": 2,
                "renter": RENTER,
                "created_at": 1_000_000.0,
                "vector": fake_embedder.embed(["What is the capital of France?"])[0],
            }
        ]
    )
    hit = cache.lookup(MODEL, "what is the capital city of France", PARAMS)
    assert hit is not None and hit.answer_text == "Paris."  # found, if more slowly
    assert cache._table.index_stats("vector_idx").num_unindexed_rows == 1
    _store(cache, "How do I boil an egg?")
    stats = cache._table.index_stats("vector_idx")
    assert (stats.num_indexed_rows, stats.num_unindexed_rows) == (302, 0)


def test_maintenance_rewrites_every_fragment_with_deleted_rows(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fabstir.cache.semantic._FRAGMENT_ROWS", 1024)
    cache = _cache(tmp_path, fake_embedder, Clock(), index_min_rows=256)
    _add_synthetic_rows(cache, 2500)  # one fragment above _FRAGMENT_ROWS: otherwise left alone
    _store(cache, "What is the capital of France?", renter="0x" + "cd" * 20)
    cache.compact()
    cache._table.delete("key = 'k7'")  # an entry inside the large fragment, e.g. expired
    assert cache.erase_renter("0x" + "cd" * 20) == 1
    assert any(f.metadata.deletion_file for f in cache._latest_dataset().get_fragments())
    cache.compact()  # a store's compaction leaves them: rewriting remaps every index
    assert any(f.metadata.deletion_file for f in cache._latest_dataset().get_fragments())
    done = cache.maintain()
    fragments = cache._latest_dataset().get_fragments()
    assert not any(f.metadata.deletion_file for f in fragments)
    assert len(fragments) == 1  # rewritten whole, not cut into fragments of _FRAGMENT_ROWS
    assert done.entries == sum(f.count_rows() for f in fragments) == 2499
    stats = cache._table.index_stats("vector_idx")
    assert (stats.num_indexed_rows, stats.num_unindexed_rows) == (2499, 0)


def test_maintenance_retrains_the_vector_index_once_the_table_outgrows_it(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fabstir.cache.semantic._ROWS_PER_PARTITION", 64)
    cache = _cache(tmp_path, fake_embedder, Clock(), index_min_rows=256)
    _add_synthetic_rows(cache, 300)
    assert cache.maintain().index_retrained is False  # the first build trains it
    (trained,) = _vector_index_partitions(cache)
    _add_synthetic_rows(cache, 2 * 64 * trained - 300, first=300)  # partitions: 2x the target
    assert cache.maintain().index_retrained is False
    _add_synthetic_rows(cache, 1, first=2 * 64 * trained)
    done = cache.maintain()
    assert done.index_retrained is True and done.entries == 2 * 64 * trained + 1
    (retrained,) = _vector_index_partitions(cache)
    assert retrained > trained
    assert cache.maintain().index_retrained is False
    _store(cache, "What is the capital of France?")
    cache.compact()
    hit = cache.lookup(MODEL, "what is the capital city of France", PARAMS)
    assert hit is not None and hit.cached_prompt == "What is the capital of France?"


def test_stores_leave_the_index_alone_while_maintenance_retrains_it(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fabstir.cache.semantic._ROWS_PER_PARTITION", 64)
    cache = _cache(tmp_path, fake_embedder, Clock(), index_min_rows=256)
    _add_synthetic_rows(cache, 300)
    cache.maintain()
    marker = "fabstir.cache.retraining_since"
    cache._latest_dataset().update_config({marker: repr(time.time())})  # a pass retraining now
    _store(cache, "What is the capital of France?")
    assert cache._table.index_stats("vector_idx").num_unindexed_rows == 1
    cache._latest_dataset().update_config({marker: repr(time.time() - 601)})  # a crashed pass's
    _store(cache, "How do I boil an egg?")
    assert cache._table.index_stats("vector_idx").num_unindexed_rows == 0

    trained, _ = _vector_index_partitions(cache)  # the stored rows' segment shares the partitions
    _add_synthetic_rows(cache, 2 * 64 * trained, first=300)
    retrain = SemanticCache._create_vector_index
    seen_during_retraining: list[str | None] = []

    def recording_retrain(self: SemanticCache, *, replace: bool) -> None:
        seen_during_retraining.append(self._latest_dataset().config().get(marker))
        retrain(self, replace=replace)

    monkeypatch.setattr(SemanticCache, "_create_vector_index", recording_retrain)
    assert cache.maintain().index_retrained is True
    assert seen_during_retraining[0] is not None
    assert marker not in cache._latest_dataset().config()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            RuntimeError("lance error: Commit conflict for version 7: preempted"),
            "cache_commit_conflict",
        ),
        (
            RuntimeError("lance error: Too many concurrent writers. Please retry"),
            "cache_commit_conflict",
        ),
        (
            RuntimeError("lance error: Incompatible transaction: Rewrite vs Update"),
            "cache_commit_conflict",
        ),
        (OSError(28, "No space left on device"), "cache_write_failed"),
    ],
)
def test_maintenance_failures_are_transient_with_their_cause(
    tmp_path: Path, fake_embedder: Any, error: Exception, code: str
) -> None:
    # Fakes: LanceDB's wordings of lost commit races and a full disk, which cannot be timed or
    # made on demand (a real lost race: the racing test below).
    cache = _cache(tmp_path, fake_embedder, Clock())

    def failing() -> None:
        raise error

    with pytest.raises(TransientError) as raised:
        cache._translate_errors(failing)
    assert raised.value.code == code


def test_a_maintenance_fault_that_is_no_race_is_raised_as_it_is(
    tmp_path: Path, fake_embedder: Any
) -> None:
    cache = _cache(tmp_path, fake_embedder, Clock())

    def failing() -> None:
        raise RuntimeError("lance error: corrupt manifest")

    with pytest.raises(RuntimeError, match="corrupt manifest"):
        cache._translate_errors(failing)


def test_maintenance_deletes_the_files_of_old_versions(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache(tmp_path, fake_embedder, Clock())
    for n in range(4):
        _store(cache, f"question number {n}")
    cache.compact()
    assert len(cache._table.list_versions()) > 4  # compaction keeps them
    monkeypatch.setattr("fabstir.cache.semantic._KEEP_VERSIONS", timedelta(0))
    cache.maintain()
    assert len(cache._table.list_versions()) == 1
    assert cache.lookup(MODEL, "question number 3", PARAMS) is not None


def test_maintenance_racing_job_compactions_fails_transiently_and_loses_nothing(
    tmp_path: Path, fake_embedder: Any
) -> None:
    # Jobs' stores index or compact the table, from any process, while maintenance runs: the
    # writer's thread stores and compacts without pause to make that race frequent (on this
    # table about every other pass loses it).
    clock = Clock()
    writer = _cache(tmp_path, fake_embedder, clock, index_min_rows=256)
    _add_synthetic_rows(writer, 300)
    writer.compact()
    maintainer = _cache(tmp_path, fake_embedder, clock, index_min_rows=256)
    stop = threading.Event()
    stored: list[str] = []
    racer_errors: list[BaseException] = []

    def store_and_compact() -> None:
        try:
            while not stop.is_set():
                stored.append(f"question stored during maintenance {len(stored)}")
                _store(writer, stored[-1])
                with contextlib.suppress(TransientError):
                    writer.compact()
        except BaseException as exc:  # surfaced after join: a thread's error is otherwise lost
            racer_errors.append(exc)

    outcomes: list[str] = []
    racer = threading.Thread(target=store_and_compact)
    racer.start()
    try:
        while len(outcomes) < 50 and not {"done", "cache_commit_conflict"} <= set(outcomes):
            try:
                maintainer.maintain()
                outcomes.append("done")
            except TransientError as exc:
                outcomes.append(exc.code)
    finally:
        stop.set()
        racer.join()
    assert not racer_errors, racer_errors
    assert {"done", "cache_commit_conflict"} <= set(outcomes), outcomes

    done = maintainer.maintain()  # alone again, as the task's retry is
    prompts = {row["prompt"] for row in maintainer._table.search().limit(None).to_list()}
    assert set(stored) <= prompts
    assert len(prompts) == done.entries == 300 + len(stored)


@pytest.mark.parametrize(
    "bounds", [{"ttl_s": 0}, {"ttl_s": -5}, {"max_entries": 0}, {"index_min_rows": 10}]
)
def test_bounds_out_of_range_are_config_errors(
    tmp_path: Path, fake_embedder: Any, bounds: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError):
        _cache(tmp_path, fake_embedder, Clock(), **bounds)


def test_temperature_above_zero_bypasses_unless_reuse_is_allowed() -> None:
    assert answer_reusable(0.0, allow_reuse=False)
    assert not answer_reusable(0.7, allow_reuse=False)
    assert answer_reusable(0.7, allow_reuse=True)
    with pytest.raises(ValueError):
        answer_reusable(-0.1, allow_reuse=True)


def test_a_hit_in_another_scope_of_the_lookup_keeps_that_entry(
    tmp_path: Path, fake_embedder: Any
) -> None:
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock, max_entries=2)
    cache.store(MODEL, "What is the capital of France?", CUT, "Paris is the", 8, renter=RENTER)
    clock.now += 10
    _store(cache, "How do I boil an egg?")
    clock.now += 10
    hit = cache.lookup(MODEL, "What is the capital of France?", PARAMS, CUT)
    assert hit is not None and hit.answer_text == "Paris is the"
    clock.now += 10
    _store(cache, "Why is the sky blue?")
    assert cache.evict() == 1
    assert cache.lookup(MODEL, "How do I boil an egg?", PARAMS) is None  # unused: evicted
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS, CUT) is not None


def _uses(cache: SemanticCache) -> dict[str, list[float]]:
    rows = cache._latest_uses_dataset().to_table().to_pylist()
    uses: dict[str, list[float]] = {}
    for row in rows:
        uses.setdefault(row["key"], []).append(row["used_at"])
    return uses


def test_uses_are_appended_to_their_own_table_and_never_rewrite_an_entry(
    tmp_path: Path, fake_embedder: Any
) -> None:
    # A rewritten row stays deleted in its fragment until maintenance, slowing every lookup.
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock)
    _store(cache, "What is the capital of France?")
    before = cache._latest_dataset().version
    clock.now += 5
    assert cache.lookup(MODEL, "what is the capital city of France", PARAMS) is not None
    cache.write_uses()
    assert cache._latest_dataset().version == before
    key = exact_key(MODEL, "What is the capital of France?", PARAMS)
    assert _uses(cache) == {key: [clock.now]}
    cache.write_uses()  # nothing pending: nothing written
    assert _uses(cache) == {key: [clock.now]}


def test_pending_uses_are_written_once_the_oldest_has_waited_a_minute(
    tmp_path: Path, fake_embedder: Any
) -> None:
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock)
    _store(cache, "What is the capital of France?")
    _store(cache, "How do I boil an egg?")
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    clock.now += 59
    assert cache.lookup(MODEL, "How do I boil an egg?", PARAMS) is not None
    assert _uses(cache) == {}
    clock.now += 1
    assert cache.lookup(MODEL, "How do I boil an egg?", PARAMS) is not None
    assert _uses(cache) == {
        exact_key(MODEL, "What is the capital of France?", PARAMS): [clock.now - 60],
        exact_key(MODEL, "How do I boil an egg?", PARAMS): [clock.now],
    }


def test_a_process_writes_its_pending_uses_as_it_exits(tmp_path: Path, fake_embedder: Any) -> None:
    # A job's process looks up once and exits: its hit must still count for eviction.
    child = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import BagOfWordsEmbedder
from fabstir.cache import SemanticCache
cache = SemanticCache({str(tmp_path / "cache")!r}, BagOfWordsEmbedder(), 0.8)
cache.store("model", "What is the capital of France?", {PARAMS!r}, "Paris.", 2, renter="0xab")
assert cache.lookup("model", "what is the capital city of France", {PARAMS!r}) is not None
"""
    subprocess.run([sys.executable, "-c", child], check=True, timeout=120)
    cache = _cache(tmp_path, fake_embedder, Clock())
    assert list(_uses(cache)) == [exact_key(MODEL, "What is the capital of France?", PARAMS)]


def test_closing_a_cache_writes_its_pending_uses_now(tmp_path: Path, fake_embedder: Any) -> None:
    from fabstir.cache import semantic

    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock)
    _store(cache, "What is the capital of France?")
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    cache.close()
    assert _uses(cache) == {exact_key(MODEL, "What is the capital of France?", PARAMS): [clock.now]}
    assert cache not in semantic._OPEN_CACHES  # nothing left for the write at exit


def test_uses_that_cannot_be_written_stay_pending(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock)
    _store(cache, "What is the capital of France?")
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    add = cache._uses.add

    def full_disk(data: Any) -> None:  # a fake: a full disk cannot be made on demand
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache._uses, "add", full_disk)
    with pytest.raises(TransientError) as raised:
        cache.write_uses()
    assert raised.value.code == "cache_write_failed"
    clock.now += 60
    # The lookup that finds the batch due stands, though its write fails again.
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    monkeypatch.setattr(cache._uses, "add", add)
    cache.write_uses()
    assert _uses(cache) == {exact_key(MODEL, "What is the capital of France?", PARAMS): [clock.now]}


def test_maintenance_keeps_one_latest_use_per_remaining_entry(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fabstir.cache.semantic._WRITE_USES_EVERY", 1)
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock, max_entries=2)
    for prompt in ("What is the capital of France?", "How do I boil an egg?"):
        _store(cache, prompt)
    france = exact_key(MODEL, "What is the capital of France?", PARAMS)
    sky = exact_key(MODEL, "Why is the sky blue?", PARAMS)
    clock.now += 5
    assert cache.lookup(MODEL, "How do I boil an egg?", PARAMS) is not None
    for _ in range(3):
        clock.now += 10
        assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    clock.now += 10
    _store(cache, "Why is the sky blue?")
    assert len(_uses(cache)[france]) == 3
    assert cache.maintain().evicted == 1  # the egg, last used before the others
    assert cache.lookup(MODEL, "How do I boil an egg?", PARAMS) is None
    assert _uses(cache) == {france: [clock.now - 10]}
    # Uses recorded after a pass are kept beside what it folded, and folded by the next.
    clock.now += 10
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    assert cache.lookup(MODEL, "Why is the sky blue?", PARAMS) is not None
    assert _uses(cache) == {france: [clock.now - 20, clock.now], sky: [clock.now]}
    cache.maintain()
    assert _uses(cache) == {france: [clock.now], sky: [clock.now]}
    assert len(cache._latest_uses_dataset().get_fragments()) == 1


def test_erasure_removes_the_renters_entries_uses(tmp_path: Path, fake_embedder: Any) -> None:
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock)
    other = "0x" + "cd" * 20
    _store(cache, "What is the capital of France?")
    _store(cache, "Why is the sky blue?", renter=other)
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    assert cache.lookup(MODEL, "Why is the sky blue?", PARAMS) is not None
    cache.write_uses()
    assert cache.lookup(MODEL, "what is the capital city of France", PARAMS) is not None
    assert cache.erase_renter(RENTER) == 1
    cache.write_uses()  # the erased entry's pending use is gone too
    assert list(_uses(cache)) == [exact_key(MODEL, "Why is the sky blue?", PARAMS)]


def test_a_stores_compaction_merges_only_the_small_fragments(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store's compaction rewrote the tail fragment with the new rows every time, up to
    # _FRAGMENT_ROWS of it; it now leaves fragments of _SMALL_FRAGMENT_ROWS or more to maintenance.
    monkeypatch.setattr("fabstir.cache.semantic._SMALL_FRAGMENTS", 4)
    monkeypatch.setattr("fabstir.cache.semantic._SMALL_FRAGMENT_ROWS", 6)
    cache = _cache(tmp_path, fake_embedder, Clock())

    def fragments() -> list[tuple[int, int]]:
        return [(f.fragment_id, f.count_rows()) for f in cache._latest_dataset().get_fragments()]

    for n in range(8):  # merged at the 4th store, and at the 7th: 4 rows is small
        _store(cache, f"question number {n}")
    (large, seven), (_, one) = fragments()
    assert (seven, one) == (7, 1)
    for n in range(8, 14):  # merged at the 11th and 14th store, each time the small ones only
        _store(cache, f"question number {n}")
    (kept, _), (_, merged) = fragments()
    assert (kept, merged) == (large, 7)  # the large one never rewritten
    done = cache.maintain()
    assert (done.fragments, done.entries) == (1, 14)


def test_a_uses_write_that_fails_otherwise_keeps_the_hit_and_waits_to_retry(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake: LanceDB's errors other than I/O ones cannot be made on demand.
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock)
    _store(cache, "What is the capital of France?")
    add = cache._uses.add
    attempts: list[int] = []

    def failing(data: Any) -> None:
        attempts.append(len(data))
        raise RuntimeError("lance error: something unexpected")

    monkeypatch.setattr(cache._uses, "add", failing)
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    clock.now += 60
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    assert attempts == [1]
    clock.now += 30
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    assert attempts == [1]  # not at every lookup while the table cannot be written
    monkeypatch.setattr(cache._uses, "add", add)
    clock.now += 30
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    assert _uses(cache) == {exact_key(MODEL, "What is the capital of France?", PARAMS): [clock.now]}


def test_erasure_finds_entries_another_process_stored_a_moment_ago(
    tmp_path: Path, fake_embedder: Any
) -> None:
    # Within the handles' read consistency interval (1 s): a delete on a stale view kept them.
    eraser = _cache(tmp_path, fake_embedder, Clock())
    assert eraser.lookup(MODEL, "What is the capital of France?", PARAMS) is None
    worker = _cache(tmp_path, fake_embedder, Clock())
    _store(worker, "What is the capital of France?")
    assert worker.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    worker.write_uses()
    assert eraser.erase_renter(RENTER) == 1
    assert worker._latest_dataset().count_rows() == 0
    assert _uses(worker) == {}


def test_erasure_that_failed_half_way_completes_when_run_again(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache(tmp_path, fake_embedder, Clock())
    _store(cache, "What is the capital of France?")
    assert cache.lookup(MODEL, "What is the capital of France?", PARAMS) is not None
    cache.write_uses()
    delete = cache._uses.delete

    def failing(where: str) -> None:  # a fake: an outage between two deletes, on demand
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(cache._uses, "delete", failing)
    with pytest.raises(OSError):
        cache.erase_renter(RENTER)
    monkeypatch.setattr(cache._uses, "delete", delete)
    assert cache.erase_renter(RENTER) == 1
    assert cache._table.count_rows() == 0 and _uses(cache) == {}
