"""A renter's check of a delivered result: its hash against the chain and its billing proof."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fabstir.domain import JobState
from fabstir.errors import ChainError, JobRejected, ProofError, ResultIntegrityError
from fabstir.proofs.circuit import BillingStatement

if TYPE_CHECKING:
    from fabstir.chain import ChainClient
    from fabstir.proofs.prover import BillingProver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifiedDelivery:
    """A settled job whose result bytes and billing proof checked out."""

    job_id: int
    result_hash: str
    tokens: int
    amount_wei: int
    settle_tx: str
    proved_with: tuple[int, ...]
    """Every job the same proof settled (the job alone, or its whole batch)."""


def verify_delivery(
    chain: ChainClient, prover: BillingProver, job_id: int, result: bytes
) -> VerifiedDelivery:
    """Check a delivered result as its renter: ``result`` (the stored result record's bytes)
    hashes to the job's on-chain result hash, and the billing proof its settlement carried
    verifies, off chain, for the job records on chain (the whole batch when it was batched).

    Raises:
        JobRejected: the job is not settled (``code="job_not_settled"``) or unknown.
        ResultIntegrityError: the bytes do not hash to the recorded result hash.
        ProofError: the settlement's proof does not verify (``code="proof_rejected"``).
    """
    job = chain.get_job(job_id)
    if job.state is not JobState.SETTLED:
        raise JobRejected(
            "job is not settled", code="job_not_settled", job_id=job_id, state=job.state.name
        )
    actual = "0x" + hashlib.sha256(result).hexdigest()
    if actual != job.result_hash:
        raise ResultIntegrityError(
            "result does not match the hash recorded on chain",
            job_id=job_id,
            expected=job.result_hash,
            actual=actual,
        )
    submitted = chain.submitted_proof(job_id)
    receipt = chain.find_settlement(job_id)
    if submitted is None or receipt is None:
        raise ChainError("settled job has no settlement transaction", job_id=job_id)
    statements = [_statement_on_chain(chain, batch_job_id) for batch_job_id in submitted.job_ids]
    if not prover.verify_proof_bytes(submitted.proof, statements, submitted.capacity):
        raise ProofError(
            "the settlement's billing proof does not verify",
            code="proof_rejected",
            job_id=job_id,
            settle_tx=receipt.settle_tx,
        )
    log.info("delivery verified", extra={"job_id": job_id, "settle_tx": receipt.settle_tx})
    return VerifiedDelivery(
        job_id=job_id,
        result_hash=job.result_hash,
        tokens=job.tokens_used,
        amount_wei=job.tokens_used * job.price_per_token_wei,
        settle_tx=receipt.settle_tx,
        proved_with=submitted.job_ids,
    )


def _statement_on_chain(chain: ChainClient, job_id: int) -> BillingStatement:
    job = chain.get_job(job_id)
    return BillingStatement(
        job_id=job_id,
        model_id=job.model_id,
        prompt_hash=job.prompt_hash,
        result_hash=job.result_hash,
        tokens=job.tokens_used,
        price_per_token_wei=job.price_per_token_wei,
    )
