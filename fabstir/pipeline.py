"""The seven steps of an inference job as plain functions, each idempotent on the job id.

Each function checks chain or storage state before acting, so a crashed run can simply run again.
Prefect tasks in ``tasks/`` wrap these one to one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fabstir.domain import (
    ClaimedJob,
    InferenceResult,
    JobState,
    LocalModel,
    ProofBundle,
    Receipt,
    StoredResult,
)
from fabstir.errors import ChainError, JobRejected, ObjectMissing, ProofError
from fabstir.models import EnginePool, ModelCatalog
from fabstir.storage import ObjectStore, ResultRecord, encode_record, get_verified, put_content

if TYPE_CHECKING:
    from fabstir.cache import SemanticCache
    from fabstir.chain import ChainClient
    from fabstir.proofs import BillingProver, BillingStatement

log = logging.getLogger(__name__)

# Jobs in this version decode greedily; these sampling parameters scope the cache.
DETERMINISTIC_TEMPERATURE = 0.0


def claim_job(
    chain: ChainClient,
    catalog: ModelCatalog,
    store: ObjectStore,
    job_id: int,
    our_price_per_token_wei: int,
) -> ClaimedJob:
    """Check that the job is payable and servable, fetch its prompt, and claim it on chain.

    A job this host already claimed or settled is returned without a transaction.

    Raises:
        JobRejected: unknown, refunded or someone else's job; model not served; price below ours;
            deposit below ``max_tokens × price``; prompt missing.
        ResultIntegrityError: the stored prompt does not match the job's prompt hash.
        ContractRevert: the contract refused the claim (simulated first, so no gas is spent).
    """
    job = chain.get_job(job_id)
    context = {"job_id": job_id}
    if job.state is JobState.REFUNDED:
        raise JobRejected("job was refunded", code="job_refunded", **context)
    if (
        job.state in (JobState.CLAIMED, JobState.SETTLED)
        and job.host.lower() != chain.address.lower()
    ):
        raise JobRejected(
            "job belongs to another host", code="claimed_by_other", host=job.host, **context
        )
    spec = catalog.resolve(job.model_id)
    if job.state is JobState.POSTED:
        if job.price_per_token_wei < our_price_per_token_wei:
            raise JobRejected(
                "job pays less per token than our price",
                code="price_too_low",
                job_price_wei=job.price_per_token_wei,
                our_price_wei=our_price_per_token_wei,
                **context,
            )
        if job.deposit_wei < job.max_cost_wei:
            raise JobRejected(
                "deposit does not cover max_tokens × price",
                code="insufficient_deposit",
                deposit_wei=job.deposit_wei,
                required_wei=job.max_cost_wei,
                **context,
            )
    try:
        prompt = get_verified(store, job.prompt_uri, job.prompt_hash).decode("utf-8")
    except ObjectMissing as exc:
        raise JobRejected(
            "prompt not found at the job's URI",
            code="prompt_missing",
            prompt_uri=job.prompt_uri,
            **context,
        ) from exc
    except UnicodeDecodeError as exc:
        raise JobRejected("prompt is not UTF-8 text", code="prompt_invalid", **context) from exc
    if job.state is JobState.SETTLED:
        log.info("job already settled by us", extra=context)
        return ClaimedJob(
            job=job,
            model_name=spec.id,
            prompt=prompt,
            claim_tx=None,
            receipt=chain.find_settlement(job_id),
        )
    if job.state is JobState.CLAIMED:
        log.info("job already claimed by us", extra=context)
        return ClaimedJob(job=job, model_name=spec.id, prompt=prompt, claim_tx=None)
    claim_tx = chain.claim_job(job_id)
    log.info("job claimed", extra={**context, "tx": claim_tx})
    return ClaimedJob(
        job=chain.get_job(job_id), model_name=spec.id, prompt=prompt, claim_tx=claim_tx
    )


def fetch_model(catalog: ModelCatalog, claimed: ClaimedJob) -> LocalModel:
    """Return the verified local file of the job's model.

    Raises:
        ModelIntegrityError: the file does not match the expected SHA-256.
    """
    return catalog.fetch(catalog.resolve(claimed.job.model_id))


def cache_params_key() -> str:
    """Return the canonical sampling parameters that scope cached answers."""
    return json.dumps({"temperature": DETERMINISTIC_TEMPERATURE}, sort_keys=True)


def look_up_cache(
    cache: SemanticCache | None, model: LocalModel, claimed: ClaimedJob
) -> InferenceResult | None:
    """Return a cached answer to the job's prompt that fits its token budget, if there is one."""
    if cache is None:
        return None
    hit = cache.lookup(model.sha256, claimed.prompt, cache_params_key())
    if hit is None or hit.completion_tokens > claimed.job.max_tokens:
        return None
    log.info(
        "cache hit",
        extra={
            "job_id": claimed.job.job_id,
            "kind": hit.kind,
            "similarity": round(hit.similarity, 4),
        },
    )
    return InferenceResult(
        text=hit.answer_text,
        prompt_tokens=0,
        completion_tokens=hit.completion_tokens,
        cache_hit=True,
    )


def infer(
    engines: EnginePool,
    cache: SemanticCache | None,
    model: LocalModel,
    claimed: ClaimedJob,
    cached: InferenceResult | None,
) -> InferenceResult:
    """Answer the job: the cached answer if there is one, else llama.cpp, filling the cache.

    Raises:
        JobRejected: the prompt plus max_tokens does not fit the model's context window.
    """
    if cached is not None:
        return cached
    result = engines.engine_for(model).generate(
        claimed.prompt, claimed.job.max_tokens, temperature=DETERMINISTIC_TEMPERATURE
    )
    if cache is not None:
        cache.store(
            model.sha256,
            claimed.prompt,
            cache_params_key(),
            result.text,
            result.completion_tokens,
            renter=claimed.job.renter,
        )
    return result


def store_result(
    store: ObjectStore, claimed: ClaimedJob, model: LocalModel, result: InferenceResult
) -> StoredResult:
    """Write the job's result record as deterministic CBOR at its content address."""
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
    return StoredResult(uri=uri, sha256=sha256)


def billing_statement(
    claimed: ClaimedJob, model: LocalModel, stored: StoredResult, tokens: int
) -> BillingStatement:
    from fabstir.proofs import BillingStatement

    return BillingStatement(
        job_id=claimed.job.job_id,
        model_sha256="0x" + model.sha256,
        prompt_hash=claimed.job.prompt_hash,
        result_hash=stored.sha256,
        tokens=tokens,
        price_per_token_wei=claimed.job.price_per_token_wei,
    )


def proof_path_for(proofs_dir: Path, job_id: int) -> Path:
    return proofs_dir / "jobs" / f"job-{job_id}.proof"


def prove_billing(
    prover: BillingProver,
    proofs_dir: Path,
    claimed: ClaimedJob,
    model: LocalModel,
    stored: StoredResult,
    result: InferenceResult,
) -> ProofBundle:
    """Prove the billing statement of the job (job, model, prompt, result, tokens, amount).

    Raises:
        ProofError: the proof could not be produced.
    """
    statement = billing_statement(claimed, model, stored, result.completion_tokens)
    path = proof_path_for(proofs_dir, claimed.job.job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    return prover.prove(statement, path)


def settle_job(
    chain: ChainClient,
    claimed: ClaimedJob,
    stored: StoredResult,
    result: InferenceResult,
    proof: ProofBundle,
) -> Receipt:
    """Submit the result and collect payment, or return the settlement an earlier run made.

    Raises:
        ProofError: the proof did not verify, so the node does not ask to be paid.
        ContractRevert: the contract refused the result.
    """
    job_id = claimed.job.job_id
    existing = chain.find_settlement(job_id)
    if existing is not None:
        log.info("job already settled", extra={"job_id": job_id, "tx": existing.settle_tx})
        return existing
    if not proof.verified:
        raise ProofError("billing proof did not verify; not submitting", job_id=job_id)
    chain.submit_result(job_id, stored.sha256, stored.uri, result.completion_tokens)
    receipt = chain.find_settlement(job_id)
    if receipt is None:
        raise ChainError("result submitted but no settlement event found", job_id=job_id)
    log.info(
        "job settled",
        extra={"job_id": job_id, "tx": receipt.settle_tx, "paid_wei": receipt.paid_to_host_wei},
    )
    return receipt
