"""Capacity at claim, ratings read from chain and timed generation, on real components."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3

from fabstir import pipeline
from fabstir.chain import ChainClient
from fabstir.domain import JobState
from fabstir.errors import JobRejected
from fabstir.models import ChainModelRegistry, ModelDiskCache, ModelManager
from fabstir.monitoring import CapacityGuard, read_ratings, summarize_ratings
from fabstir.proofs import BillingProver
from fabstir.settings import ModelSpec, MonitoringSettings
from fabstir.storage import ObjectStore, put_content
from tests.support.billing import billing_proof

from .conftest import PRICE_PER_TOKEN_WEI

pytestmark = pytest.mark.integration
MAX_TOKENS = 8


def post(renter: ChainClient, store: ObjectStore, model: str, prompt: str = "hello") -> int:
    uri, digest = put_content(store, prompt.encode(), "prompts")
    return renter.post_job(
        model,
        digest,
        uri,
        MAX_TOKENS,
        PRICE_PER_TOKEN_WEI,
        MAX_TOKENS * PRICE_PER_TOKEN_WEI,
        renter.chain_time() + 3600,
    )


def test_a_node_without_headroom_claims_nothing_and_spends_no_gas(
    host: ChainClient, renter: ChainClient, tiny_model: ModelSpec, tmp_path: Path
) -> None:
    store = ObjectStore(f"file://{tmp_path / 'storage'}")
    catalog = ModelManager(
        ChainModelRegistry(host), ModelDiskCache(tmp_path / "models", 2**30), [tiny_model.id]
    )
    job_id = post(renter, store, tiny_model.id)
    w3 = Web3(HTTPProvider(host.deployment.rpc_url))
    nonce = w3.eth.get_transaction_count(host.address)
    starved = CapacityGuard(MonitoringSettings(min_free_memory_bytes=2**60), tmp_path)
    with pytest.raises(JobRejected) as refused:
        pipeline.claim_job(host, catalog, store, job_id, PRICE_PER_TOKEN_WEI, capacity=starved)
    assert refused.value.code == "no_capacity"
    assert host.get_job(job_id).state is JobState.POSTED
    assert w3.eth.get_transaction_count(host.address) == nonce
    roomy = CapacityGuard(MonitoringSettings(min_free_memory_bytes=0), tmp_path)
    claimed = pipeline.claim_job(host, catalog, store, job_id, PRICE_PER_TOKEN_WEI, capacity=roomy)
    assert claimed.job.state is JobState.CLAIMED and claimed.claim_tx is not None
    assert claimed.claim_ms is not None and claimed.claim_ms > 0


def test_ratings_are_read_from_the_chain(
    host: ChainClient,
    renter: ChainClient,
    tiny_model: ModelSpec,
    tmp_path: Path,
    billing_prover: BillingProver,
) -> None:
    store = ObjectStore(f"file://{tmp_path / 'storage'}")
    for score in (5, 2):
        job_id = post(renter, store, tiny_model.id)
        host.claim_job(job_id)
        proof = billing_proof(billing_prover, host, job_id, "0x" + "ab" * 32, 3)
        host.submit_result(job_id, "0x" + "ab" * 32, "file:///result", 3, proof)
        renter.rate_host(job_id, score)
    scores = read_ratings(host, host.address, host.deployment.deploy_block)
    assert scores == [5, 2]
    summary = summarize_ratings(scores)
    assert (summary.count, summary.mean) == (2, 3.5)
    assert host.rating_of(host.address) == (2, 7)  # the contract's own tally agrees
    assert read_ratings(host, renter.address) == []
