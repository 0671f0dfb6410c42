"""The marketplace pays only for a valid billing proof of exactly the submitted job, result and
token count; one proof settles a batch. Real EZKL proofs, real verifier contracts, anvil."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3

from fabstir.chain import ETH, ChainClient, Deployment, ResultSubmission
from fabstir.domain import JobState
from fabstir.errors import ContractRevert, JobRejected, ProofError, ResultIntegrityError
from fabstir.proofs import BillingProver, read_proof_bytes, verify_delivery
from fabstir.settings import ModelSpec
from tests.support.billing import billing_proof, statement_for

from .conftest import MAX_TOKENS, PRICE_PER_TOKEN_WEI

pytestmark = pytest.mark.integration

RESULT = b"the stored result record"
RESULT_HASH = "0x" + hashlib.sha256(RESULT).hexdigest()
RESULT_URI = "file:///results/r.cbor"


def money(host: ChainClient, renter: ChainClient) -> tuple[int, ...]:
    """Every balance a settlement could move: credits of host, treasury, renter; escrow."""
    market = host.deployment.job_marketplace
    treasury = host.treasury()
    return (
        host.credit_of(host.address),
        host.credit_of(treasury),
        host.credit_of(renter.address),
        host.balance_of(market, ETH),
    )


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(ContractRevert) as error:
        call()
    return error.value.error_name


def test_a_valid_proof_gets_the_host_paid_exactly(
    host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    billing_prover: BillingProver,
) -> None:
    job_id = post_job()
    host.claim_job(job_id)
    before = money(host, renter)
    tokens = 5
    proof = billing_proof(billing_prover, host, job_id, RESULT_HASH, tokens)

    host.submit_result(job_id, RESULT_HASH, RESULT_URI, tokens, proof)

    payment = tokens * PRICE_PER_TOKEN_WEI
    fee = payment * host.get_job(job_id).fee_bps // 10_000
    refund = MAX_TOKENS * PRICE_PER_TOKEN_WEI - payment
    after = money(host, renter)
    assert [a - b for a, b in zip(after, before, strict=True)] == [payment - fee, fee, refund, 0]
    job = host.get_job(job_id)
    assert (job.state, job.tokens_used, job.result_hash) == (JobState.SETTLED, tokens, RESULT_HASH)


@pytest.mark.parametrize(
    "forgery",
    ["tampered_proof", "proof_of_another_job", "inflated_tokens", "another_result", "no_proof"],
)
def test_a_proof_that_does_not_match_the_submission_is_refused_and_nothing_moves(
    host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    billing_prover: BillingProver,
    forgery: str,
) -> None:
    job_id, other_job = post_job(), post_job()
    host.claim_job(job_id)
    host.claim_job(other_job)
    tokens = 5
    proof = billing_proof(billing_prover, host, job_id, RESULT_HASH, tokens)
    submission = {"job_id": job_id, "result_hash": RESULT_HASH, "tokens": tokens, "proof": proof}
    if forgery == "tampered_proof":
        flipped = bytearray(proof)
        flipped[100] ^= 1
        submission["proof"] = bytes(flipped)
    elif forgery == "proof_of_another_job":
        submission["job_id"] = other_job
    elif forgery == "inflated_tokens":
        submission["tokens"] = tokens + 1
    elif forgery == "another_result":
        submission["result_hash"] = "0x" + "33" * 32
    else:
        submission["proof"] = b""
    before = money(host, renter)

    name = refused(
        lambda: host.submit_result(
            submission["job_id"],
            submission["result_hash"],
            RESULT_URI,
            submission["tokens"],
            submission["proof"],
        )
    )

    assert name == "InvalidProof"
    assert money(host, renter) == before
    assert host.get_job(job_id).state is JobState.CLAIMED
    assert host.get_job(other_job).state is JobState.CLAIMED


def test_one_proof_settles_a_batch_of_four_exactly_once(
    host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    billing_prover: BillingProver,
    tmp_path: Path,
) -> None:
    job_ids = [post_job() for _ in range(4)]
    for job_id in job_ids:
        host.claim_job(job_id)
    token_counts = [1, 3, 5, MAX_TOKENS]
    statements = [
        statement_for(host, job_id, RESULT_HASH, tokens)
        for job_id, tokens in zip(job_ids, token_counts, strict=True)
    ]
    bundle = billing_prover.prove_batch(statements, tmp_path / "batch.proof")
    assert bundle.verified and len(bundle.public_instances) == 4 * 4
    submissions = [
        ResultSubmission(job_id, RESULT_HASH, f"{RESULT_URI}?{job_id}", tokens)
        for job_id, tokens in zip(job_ids, token_counts, strict=True)
    ]
    proof = read_proof_bytes(Path(bundle.proof_path))
    before = money(host, renter)

    # A batch refused for one bad entry settles none of its jobs.
    inflated = [*submissions[:3], submissions[3]._replace(tokens=MAX_TOKENS - 1)]
    assert refused(lambda: host.submit_results(inflated, 4, proof)) == "InvalidProof"
    assert refused(lambda: host.submit_results(submissions, 16, proof)) == "InvalidProof"
    assert refused(lambda: host.submit_results(submissions, 1, proof)) == "BatchSize"
    assert money(host, renter) == before

    tx = host.submit_results(submissions, 4, proof)

    receipts = [host.find_settlement(job_id) for job_id in job_ids]
    assert {receipt.settle_tx for receipt in receipts if receipt} == {tx}
    payments = [tokens * PRICE_PER_TOKEN_WEI for tokens in token_counts]
    fees = [payment * 250 // 10_000 for payment in payments]
    after = money(host, renter)
    assert after[0] - before[0] == sum(payments) - sum(fees)
    assert after[1] - before[1] == sum(fees)
    assert after[2] - before[2] == 4 * MAX_TOKENS * PRICE_PER_TOKEN_WEI - sum(payments)
    assert [host.get_job(j).tokens_used for j in job_ids] == token_counts
    assert [renter.result_uri(j) for j in job_ids] == [s.result_uri for s in submissions]
    # Settled once: the same batch again, or any of its jobs alone, is refused.
    assert refused(lambda: host.submit_results(submissions, 4, proof)) == "NotClaimed"
    assert money(host, renter) == after
    delivery = verify_delivery(renter, billing_prover, job_ids[2], RESULT)
    assert delivery.proved_with == tuple(job_ids) and delivery.tokens == 5


def test_the_largest_job_is_billed_exactly(
    deployment: Deployment,
    host: ChainClient,
    renter: ChainClient,
    tiny_model: ModelSpec,
    billing_prover: BillingProver,
) -> None:
    """At the marketplace's bounds (2**32 - 1 tokens at 2**88 - 1 wei) the amount is above 2**119:
    the circuit and the contract must both keep it exact."""
    tokens, price = 2**32 - 1, 2**88 - 1
    deposit = tokens * price
    w3 = Web3(HTTPProvider(deployment.rpc_url))
    w3.provider.make_request("anvil_setBalance", [renter.address, hex(2 * deposit)])
    job_id = renter.post_job(
        tiny_model.id,
        "0x" + "11" * 32,
        "file:///prompts/largest.txt",
        tokens,
        price,
        deposit,
        renter.chain_time() + 3600,
    )
    host.claim_job(job_id)
    before = money(host, renter)

    proof = billing_proof(billing_prover, host, job_id, RESULT_HASH, tokens)
    host.submit_result(job_id, RESULT_HASH, RESULT_URI, tokens, proof)

    fee = deposit * host.get_job(job_id).fee_bps // 10_000
    after = money(host, renter)
    assert [a - b for a, b in zip(after, before, strict=True)] == [deposit - fee, fee, 0, 0]


def test_a_batch_names_each_job_once(
    host: ChainClient, post_job: Callable[..., int], billing_prover: BillingProver, tmp_path: Path
) -> None:
    job_id = post_job()
    statement = statement_for(host, job_id, RESULT_HASH, 1)
    with pytest.raises(ValueError, match="each job once"):
        billing_prover.prove_batch([statement, statement], tmp_path / "twice.proof")


def test_the_renter_checks_the_result_and_the_proof_against_the_chain(
    host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    billing_prover: BillingProver,
) -> None:
    job_id = post_job()
    host.claim_job(job_id)
    with pytest.raises(JobRejected) as unsettled:
        verify_delivery(renter, billing_prover, job_id, RESULT)
    assert unsettled.value.code == "job_not_settled"
    proof = billing_proof(billing_prover, host, job_id, RESULT_HASH, 4)
    host.submit_result(job_id, RESULT_HASH, RESULT_URI, 4, proof)

    delivery = verify_delivery(renter, billing_prover, job_id, RESULT)

    assert (delivery.job_id, delivery.tokens, delivery.result_hash) == (job_id, 4, RESULT_HASH)
    assert delivery.amount_wei == 4 * PRICE_PER_TOKEN_WEI and delivery.proved_with == (job_id,)
    with pytest.raises(ResultIntegrityError):
        verify_delivery(renter, billing_prover, job_id, RESULT + b" (altered)")


def test_verify_delivery_rejects_a_proof_the_renter_cannot_verify(
    host: ChainClient,
    renter: ChainClient,
    post_job: Callable[..., int],
    billing_prover: BillingProver,
    tmp_path: Path,
) -> None:
    """A renter whose verifying key comes from another SRS cannot confirm the proof the chain
    accepted, and is told so rather than handed a result."""
    from fabstir.proofs.artifacts import CIRCUIT_LOGROWS, import_ezkl

    job_id = post_job()
    host.claim_job(job_id)
    srs = tmp_path / "other.srs"
    import_ezkl().gen_srs(str(srs), CIRCUIT_LOGROWS)
    proof = billing_proof(billing_prover, host, job_id, RESULT_HASH, 2)
    host.submit_result(job_id, RESULT_HASH, RESULT_URI, 2, proof)
    with pytest.raises(ProofError) as rejected:
        verify_delivery(renter, BillingProver(tmp_path / "other", srs), job_id, RESULT)
    assert rejected.value.code == "proof_rejected"
