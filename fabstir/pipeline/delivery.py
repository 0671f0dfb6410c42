"""The delivery steps: store the result, prove the bill, settle on chain; and erasure."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fabstir.domain import (
    ClaimedJob,
    InferenceResult,
    LocalModel,
    ProofBundle,
    Receipt,
    StoredResult,
)
from fabstir.errors import ChainError, ProofError
from fabstir.storage import (
    JobEntry,
    JobIndex,
    ObjectStore,
    ResultRecord,
    encode_record,
    put_content,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fabstir.cache import SemanticCache
    from fabstir.chain import ChainClient
    from fabstir.proofs import BillingProver, BillingStatement

log = logging.getLogger(__name__)


def store_result(
    store: ObjectStore, claimed: ClaimedJob, model: LocalModel, result: InferenceResult
) -> StoredResult:
    """Write the job's result record as deterministic CBOR at its content address, and index it."""
    record = ResultRecord(
        job_id=claimed.job.job_id,
        model_id=claimed.model_name,
        model_sha256=model.sha256,
        prompt_hash=claimed.job.prompt_hash,
        output=result.text,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        cache_hit=result.cache_hit,
    )
    uri, sha256 = put_content(store, encode_record(record), "results")
    JobIndex(store).record(
        JobEntry(
            job_id=claimed.job.job_id,
            renter=claimed.job.renter,
            result_key=store.key_of(uri),
            result_sha256=sha256,
        )
    )
    return StoredResult(uri=uri, sha256=sha256)


BillableJob = tuple[ClaimedJob, StoredResult, InferenceResult]
"""A job ready to bill: claimed, its result stored, its answer with the token count."""


def billing_statement(claimed: ClaimedJob, stored: StoredResult, tokens: int) -> BillingStatement:
    """Return what this host bills for the job: its on-chain model id, prompt hash and price,
    the stored result's hash and ``tokens``."""
    from fabstir.proofs import BillingStatement

    return BillingStatement(
        job_id=claimed.job.job_id,
        model_id=claimed.job.model_id,
        prompt_hash=claimed.job.prompt_hash,
        result_hash=stored.sha256,
        tokens=tokens,
        price_per_token_wei=claimed.job.price_per_token_wei,
    )


def proof_path_for(proofs_dir: Path, job_id: int) -> Path:
    return proofs_dir / "jobs" / f"job-{job_id}.proof"


def batch_proof_path_for(proofs_dir: Path, job_ids: Sequence[int]) -> Path:
    return proofs_dir / "batches" / f"jobs-{'-'.join(map(str, job_ids))}.proof"


def prove_billing(
    prover: BillingProver,
    proofs_dir: Path,
    claimed: ClaimedJob,
    stored: StoredResult,
    result: InferenceResult,
) -> ProofBundle:
    """Prove the job's billing statement (job, model id, prompt, result, tokens, price) for
    ``submitResult``.

    Raises:
        ProofError: the proof could not be produced.
    """
    statement = billing_statement(claimed, stored, result.completion_tokens)
    path = proof_path_for(proofs_dir, claimed.job.job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    return prover.prove(statement, path)


def prove_billing_batch(
    prover: BillingProver, proofs_dir: Path, jobs: Sequence[BillableJob]
) -> ProofBundle:
    """Prove the billing statements of 1 to 16 jobs with one proof, for ``settle_batch``.

    Raises:
        ValueError: no jobs, more than 16, or one job twice.
        ProofError: the proof could not be produced.
    """
    statements = [
        billing_statement(claimed, stored, result.completion_tokens)
        for claimed, stored, result in jobs
    ]
    path = batch_proof_path_for(proofs_dir, [statement.job_id for statement in statements])
    path.parent.mkdir(parents=True, exist_ok=True)
    return prover.prove_batch(statements, path)


def settle_job(
    chain: ChainClient,
    claimed: ClaimedJob,
    stored: StoredResult,
    result: InferenceResult,
    proof: ProofBundle,
) -> Receipt:
    """Submit the result with its billing proof, which credits our earnings in the marketplace
    (withdrawn later with ``fabstir-node withdraw``), or return the settlement an earlier run made.

    Raises:
        ProofError: the proof did not verify, so the node does not ask to be paid.
        ContractRevert: the contract refused the result (``InvalidProof`` among others).
    """
    (receipt,) = settle_batch(chain, [(claimed, stored, result)], proof)
    return receipt


def settle_batch(
    chain: ChainClient, jobs: Sequence[BillableJob], proof: ProofBundle
) -> list[Receipt]:
    """Settle jobs proved together (``prove_billing_batch``, or one job by ``prove_billing``)
    in one transaction, or return the settlements an earlier run made: a batch settles all of
    its jobs or none.

    Raises:
        ProofError: the proof did not verify, so the node does not ask to be paid.
        ContractRevert: the contract refused the batch.
    """
    from fabstir.chain import ResultSubmission
    from fabstir.proofs import capacity_of, read_proof_bytes

    job_ids = [claimed.job.job_id for claimed, _, _ in jobs]
    if chain.find_settlement(job_ids[0]) is not None:
        log.info("jobs already settled", extra={"job_ids": job_ids})
        return [_settlement(chain, job_id) for job_id in job_ids]
    if not proof.verified:
        raise ProofError("billing proof did not verify; not submitting", job_ids=job_ids)
    proof_bytes = read_proof_bytes(Path(proof.proof_path))
    submissions = [
        ResultSubmission(claimed.job.job_id, stored.sha256, stored.uri, result.completion_tokens)
        for claimed, stored, result in jobs
    ]
    capacity = capacity_of(proof)
    if capacity == 1 and len(submissions) == 1:
        chain.submit_result(*submissions[0], proof_bytes)
    else:
        chain.submit_results(submissions, capacity, proof_bytes)
    receipts = [_settlement(chain, job_id) for job_id in job_ids]
    for receipt in receipts:
        log.info(
            "job settled",
            extra={
                "job_id": receipt.job_id,
                "tx": receipt.settle_tx,
                "paid_wei": receipt.paid_to_host_wei,
            },
        )
    return receipts


def _settlement(chain: ChainClient, job_id: int) -> Receipt:
    receipt = chain.find_settlement(job_id)
    if receipt is None:
        raise ChainError("result submitted but no settlement event found", job_id=job_id)
    return receipt


def erase_renter_data(
    store: ObjectStore, cache: SemanticCache | None, renter: str
) -> dict[str, int]:
    """Delete every result, job index entry and cache entry derived from ``renter``'s jobs.

    Raises:
        ValueError: ``renter`` is not a 0x-prefixed 20-byte address.
    """
    erased = {
        "jobs": JobIndex(store).erase_renter(renter),
        "cache_entries": cache.erase_renter(renter) if cache is not None else 0,
    }
    log.info("renter data erased", extra=erased)
    return erased
