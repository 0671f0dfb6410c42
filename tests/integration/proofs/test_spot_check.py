"""Re-execution spot checks on real parts: llama.cpp on the tiny GGUF, a file store, anvil.

Each job runs through the real pipeline (claim, infer, store, prove, settle). Then the check
re-runs it; a result rewritten in storage after settlement, or an answer the model does not give,
is recorded as failed and handed to the alert callback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fabstir import pipeline
from fabstir.chain import ChainClient
from fabstir.domain import InferenceResult
from fabstir.errors import JobRejected
from fabstir.models import ChainModelRegistry, EnginePool, ModelDiskCache, ModelManager
from fabstir.proofs import BillingProver
from fabstir.settings import EngineSettings, ModelSpec
from fabstir.spotcheck import SpotCheck, spot_check, spot_check_key
from fabstir.storage import ObjectStore, decode_record, encode_record

from .conftest import PRICE_PER_TOKEN_WEI

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engines() -> Iterator[EnginePool]:
    yield EnginePool(EngineSettings(n_ctx=256))


@pytest.fixture
def catalog(host: ChainClient, tiny_model: ModelSpec, tmp_path: Path) -> ModelManager:
    return ModelManager(
        ChainModelRegistry(host), ModelDiskCache(tmp_path / "models", 2**30), [tiny_model.id]
    )


@pytest.fixture
def settle(
    host: ChainClient,
    store: ObjectStore,
    catalog: ModelManager,
    engines: EnginePool,
    billing_prover: BillingProver,
    tmp_path: Path,
) -> Callable[..., int]:
    """Run a posted job through the pipeline; ``answer`` replaces the model's (a lying host)."""

    def run(job_id: int, answer: InferenceResult | None = None) -> int:
        claimed = pipeline.claim_job(host, catalog, store, job_id, PRICE_PER_TOKEN_WEI)
        model = pipeline.fetch_model(catalog, claimed)
        result = answer or pipeline.infer(engines, None, model, claimed, None)
        stored = pipeline.store_result(store, claimed, model, result)
        proof = pipeline.prove_billing(billing_prover, tmp_path / "proofs", claimed, stored, result)
        pipeline.settle_job(host, claimed, stored, result, proof)
        return job_id

    return run


def check(
    host: ChainClient, store: ObjectStore, catalog: ModelManager, engines: EnginePool, job_id: int
) -> tuple[SpotCheck, list[SpotCheck]]:
    alerts: list[SpotCheck] = []
    outcome = spot_check(host, store, catalog, engines, job_id, on_failure=alerts.append)
    recorded = json.loads(store.get(spot_check_key(job_id)))
    assert recorded["status"] == outcome.status and recorded["reason"] == outcome.reason
    return outcome, alerts


def test_an_honest_job_is_reproduced(
    host: ChainClient,
    store: ObjectStore,
    catalog: ModelManager,
    engines: EnginePool,
    post_job: Callable[..., int],
    settle: Callable[..., int],
) -> None:
    job_id = settle(post_job("the cat sat"))
    outcome, alerts = check(host, store, catalog, engines, job_id)
    assert (outcome.status, outcome.reason, alerts) == ("passed", "reproduced", [])


def test_a_result_altered_in_storage_is_detected_and_alerted(
    host: ChainClient,
    store: ObjectStore,
    catalog: ModelManager,
    engines: EnginePool,
    post_job: Callable[..., int],
    settle: Callable[..., int],
) -> None:
    job_id = settle(post_job("the cat sat"))
    job = host.get_job(job_id)
    key = store.key_of(host.result_uri(job_id))
    original = decode_record(store.get(key))
    store.put(key, encode_record(original.model_copy(update={"output": "something else"})))

    outcome, alerts = check(host, store, catalog, engines, job_id)

    assert (outcome.status, outcome.reason) == ("failed", "result_altered")
    assert outcome.expected == job.result_hash and outcome.actual != job.result_hash
    assert alerts == [outcome]


def test_an_answer_the_model_does_not_give_is_detected(
    host: ChainClient,
    store: ObjectStore,
    catalog: ModelManager,
    engines: EnginePool,
    post_job: Callable[..., int],
    settle: Callable[..., int],
) -> None:
    invented = InferenceResult(
        text="an invented answer", prompt_tokens=3, completion_tokens=4, cache_hit=False
    )
    job_id = settle(post_job("the cat sat"), answer=invented)

    outcome, alerts = check(host, store, catalog, engines, job_id)

    assert (outcome.status, outcome.reason, alerts) == ("failed", "output_differs", [outcome])


def test_only_settled_jobs_are_checked(
    host: ChainClient,
    store: ObjectStore,
    catalog: ModelManager,
    engines: EnginePool,
    post_job: Callable[..., int],
) -> None:
    job_id = post_job()
    with pytest.raises(JobRejected) as refused:
        spot_check(host, store, catalog, engines, job_id)
    assert refused.value.code == "job_not_settled"
    assert not store.exists(spot_check_key(job_id))
