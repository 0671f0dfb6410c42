"""Sampled API requests and the answer cache: a fresh draw unless the renter allows reuse.

A node of its own whose jobs run the pipeline with a real semantic cache (LanceDB directory,
MiniLM embeddings), so that a request's ``temperature`` and ``allow_cache_reuse`` meet the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fabstir.cache import Embedder, SemanticCache
from fabstir.errors import TransientError
from fabstir.settings import ApiSettings, ModelSpec
from tests.integration.api.conftest import ApiNode, start_node

pytestmark = pytest.mark.integration

SAMPLED = {"temperature": 0.8, "seed": 7, "max_tokens": 8}
# How long the test's stuck cache write holds the job, unless released.
STALL_S = 60


@pytest.fixture(scope="module")
def cached_node(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model: ModelSpec,
    api_prover_dir: Path,
    embedding_model_path: Path,
) -> Iterator[tuple[ApiNode, SemanticCache]]:
    root = tmp_path_factory.mktemp("api-cache-node")
    cache = SemanticCache(str(root / "cache"), Embedder(embedding_model_path), 0.9)

    # As the api_node fixture: one renter, and refused requests leave their jobs unasked.
    settings = ApiSettings(
        rate_per_ip_per_min=100_000, rate_per_renter_per_min=100_000, max_claims_per_renter=1_000
    )
    for node in start_node(root, tiny_model, api_prover_dir, settings, cache):
        yield node, cache


def _ask(node: ApiNode, prompt: str, **body: Any) -> tuple[int, httpx.Response]:
    messages = [{"role": "user", "content": prompt}]
    job_id = node.post_chat(messages)
    token = node.renter.authenticate(node.url, job_id)
    response = httpx.post(
        node.url + "/v1/chat/completions",
        json={"model": node.model.id, "messages": messages, **body},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    return job_id, response


def _answered_from_cache(node: ApiNode, job_id: int) -> bool:
    token = node.renter.authenticate(node.url, job_id)
    for _ in range(600):
        response = httpx.get(
            f"{node.url}/v1/jobs/{job_id}/result", headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code == 200:
            return bool(response.json()["cache_hit"])
        time.sleep(0.1)
    raise AssertionError("no result stored")


def test_a_sampled_request_is_a_fresh_draw_unless_reuse_is_allowed(
    cached_node: tuple[ApiNode, SemanticCache],
) -> None:
    node, cache = cached_node
    prompt = "the cat sat on the mat"

    first, response = _ask(node, prompt, **SAMPLED, allow_cache_reuse=True)
    assert response.status_code == 200, response.text
    answer = response.json()["choices"][0]["message"]["content"]
    assert not _answered_from_cache(node, first)
    assert cache._table.count_rows() == 1  # allowed to fill, in its sampling scope

    fresh, response = _ask(node, prompt, **SAMPLED)  # the same prompt and sampling, no opt-in
    assert response.status_code == 200, response.text
    assert not _answered_from_cache(node, fresh)  # the engine ran

    reused, response = _ask(node, prompt, **SAMPLED, allow_cache_reuse=True)
    assert response.status_code == 200, response.text
    assert _answered_from_cache(node, reused)
    assert response.json()["choices"][0]["message"]["content"] == answer

    greedy, response = _ask(node, prompt, max_tokens=8)  # another scope: temperature 0
    assert response.status_code == 200, response.text
    assert not _answered_from_cache(node, greedy)


def test_a_sampled_request_without_the_opt_in_leaves_nothing_cached(
    cached_node: tuple[ApiNode, SemanticCache],
) -> None:
    node, cache = cached_node
    prompt = "a dog ran in the park"
    rows = cache._table.count_rows()
    job_id, response = _ask(node, prompt, **SAMPLED)
    assert response.status_code == 200, response.text
    assert not _answered_from_cache(node, job_id)
    assert cache._table.count_rows() == rows

    job_id, response = _ask(node, prompt, **SAMPLED, allow_cache_reuse=True)
    assert not _answered_from_cache(node, job_id)  # nothing was left to reuse


def test_an_answer_cut_at_its_budget_is_reused_for_that_budget_only(
    cached_node: tuple[ApiNode, SemanticCache],
) -> None:
    node, _ = cached_node
    prompt = "tell me a long story about a lighthouse keeper"
    reuse = {**SAMPLED, "allow_cache_reuse": True}
    _, response = _ask(node, prompt, **reuse)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "length"  # cut at 8 tokens

    again, response = _ask(node, prompt, **reuse)
    assert response.status_code == 200, response.text
    assert _answered_from_cache(node, again)
    assert response.json()["choices"][0]["finish_reason"] == "length"  # still a cut answer

    # A larger budget gets the whole answer the engine gives it, not the cut one.
    longer, response = _ask(node, prompt, **{**reuse, "max_tokens": 12})
    assert response.status_code == 200, response.text
    assert not _answered_from_cache(node, longer)
    assert response.json()["usage"]["completion_tokens"] > SAMPLED["max_tokens"]


def test_a_greedy_request_below_its_jobs_budget_reuses_an_answer_cut_at_its_own(
    cached_node: tuple[ApiNode, SemanticCache],
) -> None:
    node, _ = cached_node
    prompt = "one two three four five six seven eight nine ten"
    first, response = _ask(node, prompt, max_tokens=8)  # the job allows MAX_TOKENS = 24
    assert response.json()["choices"][0]["finish_reason"] == "length"
    assert not _answered_from_cache(node, first)
    again, response = _ask(node, prompt, max_tokens=8)
    assert _answered_from_cache(node, again)
    assert response.json()["usage"]["completion_tokens"] == 8


@pytest.mark.parametrize("value", ["maybe", 2, None, {"yes": True}])
def test_a_wrong_allow_cache_reuse_is_a_clear_400(
    cached_node: tuple[ApiNode, SemanticCache], value: Any
) -> None:
    node, _ = cached_node
    _, response = _ask(node, "one two three", **SAMPLED, allow_cache_reuse=value)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "allow_cache_reuse" in error["message"]


def test_the_answer_does_not_wait_for_the_cache_and_survives_its_failure(
    cached_node: tuple[ApiNode, SemanticCache],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A fake: a cache write that hangs and then fails (a full disk) cannot be made on demand with
    # a real LanceDB directory. It fails as SemanticCache.store reports an I/O error.
    node, cache = cached_node
    writing, release = threading.Event(), threading.Event()

    def stalled_store(*args: object, **kwargs: object) -> None:
        writing.set()
        release.wait(STALL_S)
        raise TransientError("cache write failed: disk full", code="cache_write_failed")

    monkeypatch.setattr(cache, "store", stalled_store)
    rows_before = cache._table.count_rows()
    try:
        job_id, response = _ask(node, "a cache write that never finishes", max_tokens=8)
        # The renter has the whole answer while the cache write is still stuck ...
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["finish_reason"] in ("stop", "length")
        assert response.elapsed.total_seconds() < STALL_S / 2
        assert writing.wait(10)
    finally:
        release.set()
    # ... and the job is stored and settled although the write then failed.
    assert not _answered_from_cache(node, job_id)
    assert cache._table.count_rows() == rows_before
    assert any("cache write failed" in record.getMessage() for record in caplog.records)
