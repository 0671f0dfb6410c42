"""The whole flow on real parts: anvil + contracts, llama.cpp, LanceDB, fsspec, EZKL, Prefect."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from blocks import EngineBlock, current_settings
from fabstir.chain import ETH
from fabstir.domain import JobState
from fabstir.errors import JobRejected
from fabstir.pipeline import proof_path_for
from fabstir.proofs import BillingProver, BillingStatement, verify_delivery
from fabstir.storage import decode_record, get_verified
from flows.inference_job import inference_job
from tests.e2e.conftest import (
    PRICE_PER_TOKEN_WEI,
    STABLE_PRICE_PER_TOKEN,
    Node,
    artifact_written,
)

pytestmark = pytest.mark.e2e


def _balances(node: Node, token: str = ETH) -> dict[str, int]:
    """Wallet balances and marketplace credits of everyone a settlement touches, in ``token``."""
    treasury = node.host.treasury()
    return {
        "host": node.host.balance_of(node.host.address, token),
        "renter": node.renter.balance_of(node.renter.address, token),
        "treasury": node.host.balance_of(treasury, token),
        "market": node.host.balance_of(node.deployment.job_marketplace, token),
        "host_credit": node.host.credit_of(node.host.address, token),
        "renter_credit": node.host.credit_of(node.renter.address, token),
        "treasury_credit": node.host.credit_of(treasury, token),
    }


@pytest.mark.parametrize(
    ("currency", "price"),
    [("ETH", PRICE_PER_TOKEN_WEI), ("USDC", STABLE_PRICE_PER_TOKEN)],
)
def test_a_job_is_credited_exactly_then_withdrawn_stored_and_proven(
    node: Node, prover_dir: Path, currency: str, price: int
) -> None:
    token = node.host.token_address(currency)
    eth_before = node.host.balance_of(node.host.address)
    job_id = node.post("the cat sat on the mat", currency=currency)
    deposit = node.renter.get_job(job_id).deposit_wei
    before = _balances(node, token)

    receipt = inference_job(job_id)

    after = _balances(node, token)
    payment = receipt.tokens * price
    fee = payment * node.host.fee_bps() // 10_000
    assert 0 < receipt.tokens <= 16 and receipt.payment_token == token
    assert (receipt.paid_to_host_wei, receipt.fee_wei) == (payment - fee, fee)
    assert receipt.refund_wei == deposit - payment
    # Settlement moves nothing out of the marketplace: it only credits.
    assert after["market"] == before["market"]
    assert after["host_credit"] - before["host_credit"] == payment - fee
    assert after["treasury_credit"] - before["treasury_credit"] == fee
    assert after["renter_credit"] - before["renter_credit"] == deposit - payment
    assert after["treasury"] == before["treasury"] and after["renter"] == before["renter"]
    gas = node.host_gas_wei(job_id)
    assert node.host.balance_of(node.host.address) == eth_before - gas
    if token != ETH:
        assert after["host"] == before["host"]

    withdrawal = node.host.withdraw(token)

    assert withdrawal is not None and withdrawal.amount == after["host_credit"]
    withdraw_gas = node.host.gas_cost_wei(withdrawal.tx_hash)
    final = _balances(node, token)
    assert final["host_credit"] == 0
    assert final["market"] == after["market"] - withdrawal.amount
    if token == ETH:
        assert final["host"] == after["host"] + withdrawal.amount - withdraw_gas
    else:
        assert final["host"] == after["host"] + withdrawal.amount
        assert node.host.balance_of(node.host.address) == eth_before - gas - withdraw_gas

    job = node.renter.get_job(job_id)
    assert job.state is JobState.SETTLED
    assert (job.result_hash, job.tokens_used) == (receipt.result_hash, receipt.tokens)
    assert node.renter.result_uri(job_id) == receipt.result_uri
    stored = get_verified(node.store, receipt.result_uri, job.result_hash)
    record = decode_record(stored)
    assert record.job_id == job_id and record.completion_tokens == receipt.tokens
    assert record.model_sha256 == node.model.sha256 and not record.cache_hit

    statement = BillingStatement(
        job_id=job_id,
        model_id=job.model_id,
        prompt_hash=job.prompt_hash,
        result_hash=job.result_hash,
        tokens=receipt.tokens,
        price_per_token_wei=price,
    )
    prover = BillingProver(prover_dir)
    assert prover.verify(proof_path_for(prover_dir, job_id), statement)
    assert not prover.verify(
        proof_path_for(prover_dir, job_id),
        BillingStatement(**{**statement.__dict__, "tokens": receipt.tokens + 1}),
    )
    delivery = verify_delivery(node.renter, prover, job_id, stored)
    assert (delivery.tokens, delivery.proved_with) == (receipt.tokens, (job_id,))


def test_generation_progress_and_the_summary_are_shown_as_artifacts(node: Node) -> None:
    since = datetime.now(UTC)
    job_id = node.post("the dog sat on the sun")
    inference_job(job_id)

    progress = artifact_written(f"job-{job_id}-progress", since, lambda a: a.data == 100.0)
    assert progress.type == "progress"
    summary = artifact_written(f"job-{job_id}", since)
    assert summary.type == "markdown" and summary.data.startswith(f"# Job {job_id}\n")
    assert summary.task_run_id is not None, "the summary belongs to the settle step's run"


def test_a_paraphrase_is_answered_from_the_cache_and_still_billed_and_proven(
    node: Node, prover_dir: Path
) -> None:
    first = inference_job(node.post("What is the capital of France?"))
    engines = EngineBlock.from_settings(current_settings()).get_client()
    generations = engines.generations

    paraphrase_job = node.post("Tell me the capital of France.")
    before = node.host.credit_of(node.host.address)
    receipt = inference_job(paraphrase_job)

    assert engines.generations == generations, "the engine ran for a cached answer"
    record = decode_record(get_verified(node.store, receipt.result_uri, receipt.result_hash))
    first_record = decode_record(get_verified(node.store, first.result_uri, first.result_hash))
    assert record.cache_hit and record.output == first_record.output
    assert receipt.tokens == first.tokens > 0
    assert node.host.credit_of(node.host.address) - before == receipt.paid_to_host_wei
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
