"""The whole flow on real parts: anvil + contracts, llama.cpp, LanceDB, fsspec, EZKL, Prefect."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks import EngineBlock, current_settings
from fabstir.domain import JobState
from fabstir.errors import JobRejected
from fabstir.pipeline import proof_path_for
from fabstir.proofs import BillingProver, BillingStatement
from fabstir.storage import decode_record, get_verified
from flows.inference_job import inference_job
from tests.e2e.conftest import PRICE_PER_TOKEN_WEI, Node

pytestmark = pytest.mark.e2e


def _balances(node: Node) -> dict[str, int]:
    return {
        "host": node.host.balance_of(node.host.address),
        "renter": node.renter.balance_of(node.renter.address),
        "treasury": node.host.balance_of(node.deployment.treasury),
    }


def test_a_job_is_paid_exactly_stored_and_proven(node: Node, prover_dir: Path) -> None:
    job_id = node.post("the cat sat on the mat")
    deposit = node.renter.get_job(job_id).deposit_wei
    before = _balances(node)

    receipt = inference_job(job_id)

    after = _balances(node)
    payment = receipt.tokens * PRICE_PER_TOKEN_WEI
    fee = payment * node.deployment.fee_bps // 10_000
    assert 0 < receipt.tokens <= 16
    assert (receipt.paid_to_host_wei, receipt.fee_wei) == (payment - fee, fee)
    assert receipt.refund_wei == deposit - payment
    assert after["host"] - before["host"] == payment - fee - node.host_gas_wei(job_id)
    assert after["treasury"] - before["treasury"] == fee
    assert after["renter"] - before["renter"] == deposit - payment
    assert node.host.balance_of(node.deployment.job_marketplace) == 0

    job = node.renter.get_job(job_id)
    assert job.state is JobState.SETTLED
    assert (job.result_hash, job.result_uri, job.tokens_used) == (
        receipt.result_hash,
        receipt.result_uri,
        receipt.tokens,
    )
    record = decode_record(get_verified(node.store, job.result_uri, job.result_hash))
    assert record.job_id == job_id and record.completion_tokens == receipt.tokens
    assert record.model_sha256 == node.model.sha256 and not record.cache_hit

    statement = BillingStatement(
        job_id=job_id,
        model_sha256="0x" + node.model.sha256,
        prompt_hash=job.prompt_hash,
        result_hash=job.result_hash,
        tokens=receipt.tokens,
        price_per_token_wei=PRICE_PER_TOKEN_WEI,
    )
    prover = BillingProver(prover_dir)
    assert prover.verify(proof_path_for(prover_dir, job_id), statement)
    assert not prover.verify(
        proof_path_for(prover_dir, job_id),
        BillingStatement(**{**statement.__dict__, "tokens": receipt.tokens + 1}),
    )


def test_a_paraphrase_is_answered_from_the_cache_and_still_billed_and_proven(
    node: Node, prover_dir: Path
) -> None:
    first = inference_job(node.post("What is the capital of France?"))
    engines = EngineBlock.from_settings(current_settings()).get_client()
    generations = engines.generations

    paraphrase_job = node.post("Tell me the capital of France.")
    before = node.host.balance_of(node.host.address)
    receipt = inference_job(paraphrase_job)

    assert engines.generations == generations, "the engine ran for a cached answer"
    record = decode_record(get_verified(node.store, receipt.result_uri, receipt.result_hash))
    first_record = decode_record(get_verified(node.store, first.result_uri, first.result_hash))
    assert record.cache_hit and record.output == first_record.output
    assert receipt.tokens == first.tokens > 0
    assert node.host.balance_of(node.host.address) - before == (
        receipt.paid_to_host_wei - node.host_gas_wei(paraphrase_job)
    )
    assert proof_path_for(prover_dir, paraphrase_job).exists()


@pytest.mark.parametrize(
    ("post_kwargs", "code"),
    [
        ({"deposit_wei": 16 * PRICE_PER_TOKEN_WEI - 1}, "insufficient_deposit"),
        ({"model_name": "a-model-nobody-serves"}, "model_not_served"),
    ],
)
def test_unpayable_or_unservable_jobs_are_refused_at_claim_without_gas(
    node: Node, post_kwargs: dict, code: str
) -> None:
    job_id = node.post("the dog ran far", **post_kwargs)
    balance, nonce = node.host.balance_of(node.host.address), node.host_nonce()

    with pytest.raises(JobRejected) as refused:
        inference_job(job_id)

    assert refused.value.code == code
    assert (node.host.balance_of(node.host.address), node.host_nonce()) == (balance, nonce)
    assert node.renter.get_job(job_id).state is JobState.POSTED


def test_running_a_settled_job_again_pays_nobody_twice(node: Node) -> None:
    job_id = node.post("the sun and the sea")
    receipt = inference_job(job_id)
    before = _balances(node)

    again = inference_job(job_id)

    assert again == receipt
    assert _balances(node) == before
