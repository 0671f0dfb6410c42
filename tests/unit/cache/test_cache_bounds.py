"""TTL, size bound, renter erasure, the ANN index threshold and the temperature bypass."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fabstir.cache import SemanticCache, answer_reusable
from fabstir.errors import ConfigError
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


def test_compaction_applies_ttl_and_bound(tmp_path: Path, fake_embedder: Any) -> None:
    clock = Clock()
    cache = _cache(tmp_path, fake_embedder, clock, max_entries=2, ttl_s=100)
    _store(cache, "What is the capital of France?")
    clock.now += 101
    for n in range(3):
        clock.now += 1
        _store(cache, f"question number {n}")
    cache.compact()
    assert sorted(row["prompt"] for row in cache._table.search().to_list()) == [
        "question number 1",
        "question number 2",
    ]


def test_writers_in_separate_processes_share_the_compaction(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two handles on one directory stand for two processes: each counts nothing of the other's.
    monkeypatch.setattr("fabstir.cache.semantic._COMPACT_EVERY", 4)
    clock = Clock()
    first = _cache(tmp_path, fake_embedder, clock, ttl_s=100)
    second = _cache(tmp_path, fake_embedder, clock, ttl_s=100)
    _store(first, "What is the capital of France?")
    clock.now += 101  # expired: only a compaction deletes it
    for n in range(2):  # fewer stores per writer than _COMPACT_EVERY
        _store(first, f"first writer's question {n}")
        _store(second, f"second writer's question {n}")
    prompts = [
        row["prompt"] for row in _cache(tmp_path, fake_embedder, clock)._table.search().to_list()
    ]
    assert len(prompts) == 4 and "What is the capital of France?" not in prompts


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


def _add_synthetic_rows(cache: SemanticCache, count: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for n in range(count):
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
    from lancedb.table import LanceTable

    prewarmed: list[str] = []
    prewarm_index = LanceTable.prewarm_index

    def recording_prewarm(table: LanceTable, name: str) -> None:
        prewarmed.append(name)
        prewarm_index(table, name)

    monkeypatch.setattr(LanceTable, "prewarm_index", recording_prewarm)
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
