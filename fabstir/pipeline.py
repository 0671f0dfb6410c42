"""The seven steps of an inference job as plain functions, each idempotent on the job id.

Each function checks chain or storage state before acting, so a crashed run can simply run again.
Prefect tasks in ``tasks/`` wrap these one to one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fabstir.domain import (
    ZERO_ADDRESS,
    ClaimedJob,
    InferenceResult,
    Job,
    JobState,
    LocalModel,
    ProofBundle,
    Receipt,
    StoredResult,
    prompt_messages,
)
from fabstir.errors import ChainError, JobRejected, ObjectMissing, ProofError
from fabstir.models import (
    EnginePool,
    Generation,
    LlamaEngine,
    ModelManager,
    SamplingParams,
    TokenPiece,
)
from fabstir.storage import (
    JobEntry,
    JobIndex,
    ObjectStore,
    ResultRecord,
    decode_record,
    encode_record,
    get_verified,
    put_content,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from fabstir.api import JobStream, JobStreams
    from fabstir.cache import SemanticCache
    from fabstir.chain import ChainClient
    from fabstir.monitoring import CapacityGuard
    from fabstir.proofs import BillingProver, BillingStatement

log = logging.getLogger(__name__)

# Jobs in this version decode greedily; these sampling parameters scope the cache.
DETERMINISTIC_TEMPERATURE = 0.0


def claim_job(
    chain: ChainClient,
    catalog: ModelManager,
    store: ObjectStore,
    job_id: int,
    our_price_per_token_wei: int,
    capacity: CapacityGuard | None = None,
) -> ClaimedJob:
    """Check that the job is payable and servable, fetch its prompt, and claim it on chain.

    ``our_price_per_token_wei`` is our ETH price; a job paid in an ERC-20 is held against the
    price we registered on chain for that token. A job this host already claimed or settled is
    returned without a transaction. With ``capacity``, a new job is claimed only while the
    machine has the headroom it requires.

    Raises:
        JobRejected: unknown, refunded, cancelled, expired or someone else's job; model not
            served; payment token not offered; price below ours; deposit below
            ``max_tokens × price``; prompt missing; no capacity for a new job.
        ResultIntegrityError: the stored prompt does not match the job's prompt hash.
        ContractRevert: the contract refused the claim (simulated first, so no gas is spent).
    """
    started_at, started = time.time(), time.perf_counter()
    job = chain.get_job(job_id)
    context = {"job_id": job_id}
    if job.state in (JobState.REFUNDED, JobState.CANCELLED):
        raise JobRejected(f"job was {job.state.name.lower()}", code="job_closed", **context)
    ours = job.host.lower() == chain.address.lower()
    if job.host != ZERO_ADDRESS and not ours:
        raise JobRejected(
            "job belongs to another host", code="claimed_by_other", host=job.host, **context
        )
    spec = catalog.resolve(job.model_id)
    if job.state is JobState.POSTED:
        _check_payable(chain, job, spec.id, our_price_per_token_wei)
    try:
        prompt = read_prompt(store, job).decode("utf-8")
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
            model_name=spec.name,
            prompt=prompt,
            claim_tx=None,
            receipt=chain.find_settlement(job_id),
        )
    timing = {"claim_started_at": started_at}
    if job.state is JobState.CLAIMED:
        log.info("job already claimed by us", extra=context)
        timing["claim_ms"] = (time.perf_counter() - started) * 1000
        return ClaimedJob(job=job, model_name=spec.name, prompt=prompt, claim_tx=None, **timing)
    if capacity is not None:
        capacity.check(job_id)
    claim_tx = chain.claim_job(job_id)
    log.info("job claimed", extra={**context, "tx": claim_tx})
    timing["claim_ms"] = (time.perf_counter() - started) * 1000
    return ClaimedJob(
        job=chain.get_job(job_id), model_name=spec.name, prompt=prompt, claim_tx=claim_tx, **timing
    )


def read_prompt(store: ObjectStore, job: Job) -> bytes:
    """Return the job's prompt bytes, checked against its on-chain hash."""
    try:
        return get_verified(store, job.prompt_uri, job.prompt_hash)
    except ObjectMissing:
        # A direct job's prompt reaches us through the API, which stores it at its content
        # address here; the renter's URI may name a place we cannot read.
        # Same key as content_key(prompt, "prompts"): the sha2-256 multihash of the bytes.
        key = f"prompts/1220{job.prompt_hash.lower().removeprefix('0x')}"
        return get_verified(store, store.uri_for(key), job.prompt_hash)


def _check_payable(chain: ChainClient, job: Job, model_name: str, our_eth_price: int) -> None:
    context = {"job_id": job.job_id}
    if job.payment_token == ZERO_ADDRESS:
        our_price = our_eth_price
    else:
        our_price = chain.price_of(chain.address, model_name, job.payment_token)
        if our_price == 0:
            raise JobRejected(
                "we take no payment in this token",
                code="token_not_offered",
                payment_token=job.payment_token,
                **context,
            )
    if job.price_per_token_wei < our_price:
        raise JobRejected(
            "job pays less per token than our price",
            code="price_too_low",
            job_price_wei=job.price_per_token_wei,
            our_price_wei=our_price,
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
    if job.deadline < chain.chain_time():
        raise JobRejected("job deadline has passed", code="job_expired", **context)


def fetch_model(catalog: ModelManager, claimed: ClaimedJob) -> LocalModel:
    """Return the verified local file of the job's model, downloading it if needed.

    Raises:
        ModelIntegrityError: the file does not match the expected SHA-256.
        TransientError: the download was interrupted (a retry resumes it).
    """
    return catalog.fetch(catalog.resolve(claimed.job.model_id))


def cache_params_key() -> str:
    """Return the canonical sampling parameters that scope cached answers."""
    return json.dumps({"temperature": DETERMINISTIC_TEMPERATURE}, sort_keys=True)


def earlier_answer(store: ObjectStore, job_id: int) -> InferenceResult | None:
    """Return the answer an earlier run of this job already stored, if one did.

    Raises:
        ResultIntegrityError: the indexed result's bytes do not match their recorded hash.
    """
    entry = JobIndex(store).lookup(job_id)
    if entry is None:
        return None
    record = decode_record(
        get_verified(store, store.uri_for(entry.result_key), entry.result_sha256)
    )
    return InferenceResult(
        text=record.output,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        cache_hit=record.cache_hit,
    )


def look_up_cache(
    cache: SemanticCache | None, store: ObjectStore, model: LocalModel, claimed: ClaimedJob
) -> InferenceResult | None:
    """Return the answer to reuse for this job, if there is one: the one an earlier run of the
    job stored (so a re-run after a crash writes no second result), else a cached answer to its
    prompt that fits its token budget.
    """
    earlier = earlier_answer(store, claimed.job.job_id)
    if earlier is not None:
        log.info("answer stored by an earlier run", extra={"job_id": claimed.job.job_id})
        return earlier
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
    streams: JobStreams | None = None,
) -> InferenceResult:
    """Answer the job: the cached answer if there is one, else llama.cpp, filling the cache.

    With ``streams`` holding a renter connected to the job through the API, its turns are
    answered with its sampling parameters, every piece is sent to it as it is generated, and a
    turn it cancels ends before the next token; the job is billed for the tokens sent.

    Raises:
        JobRejected: the prompt plus max_tokens does not fit the model's context window.
    """
    stream = streams.get(claimed.job.job_id) if streams is not None else None
    if stream is not None:
        return _answer_stream(engines.engine_for(model), cache, model, claimed, cached, stream)
    if cached is not None:
        return cached
    params = SamplingParams(
        max_tokens=claimed.job.max_tokens, temperature=DETERMINISTIC_TEMPERATURE
    )
    result, _ = _generate(
        engines.engine_for(model), prompt_messages(claimed.prompt), params, lambda _: True
    )
    _fill_cache(cache, model, claimed, result)
    return result


def _answer_stream(
    engine: LlamaEngine,
    cache: SemanticCache | None,
    model: LocalModel,
    claimed: ClaimedJob,
    cached: InferenceResult | None,
    stream: JobStream,
) -> InferenceResult:
    results: list[InferenceResult] = []
    budget = claimed.job.max_tokens
    # The API may have started the first answer during the claim; it is used only if it is
    # exactly the generation this step would start, and is cancelled after the first turn.
    prestarted = stream.take_prestarted()
    for turn in stream.turns():
        left = budget - sum(result.completion_tokens for result in results)
        max_tokens = max(1, min(turn.params.max_tokens, left))
        params = turn.params.model_copy(update={"max_tokens": max_tokens})
        deterministic = params == SamplingParams(max_tokens=params.max_tokens)
        try:
            if left <= 0:
                result = InferenceResult(
                    text="", prompt_tokens=0, completion_tokens=0, cache_hit=False
                )
                finish = "length"
            elif (
                not results
                and cached is not None
                and deterministic
                and cached.completion_tokens <= params.max_tokens
            ):
                stream.publish(TokenPiece(cached.text, cached.completion_tokens))
                result, finish = cached, "stop"
            else:
                own = turn.messages is None
                messages = prompt_messages(claimed.prompt) if own else turn.messages
                early = None
                if prestarted is not None:
                    first, generation = prestarted
                    if (first.params, first.messages) == (params, tuple(messages)):
                        early = generation
                result, finish = _generate(engine, messages, params, stream.publish, early)
                if own and deterministic and finish != "cancelled":
                    _fill_cache(cache, model, claimed, result)
        except BaseException as exc:
            stream.fail(exc)
            raise
        finally:
            if prestarted is not None:
                prestarted[1].cancel()  # a no-op once used up
                prestarted = None
        stream.end_turn(result, finish)
        results.append(result)
    if len(results) == 1:
        return results[0]
    timed = [result for result in results if result.ttft_ms is not None]
    return InferenceResult(
        text="\n\n".join(result.text for result in results),
        prompt_tokens=sum(result.prompt_tokens for result in results),
        completion_tokens=sum(result.completion_tokens for result in results),
        cache_hit=bool(results) and all(result.cache_hit for result in results),
        ttft_ms=timed[0].ttft_ms if timed else None,
        decode_tokens_per_s=timed[0].decode_tokens_per_s if timed else None,
    )


def _generate(
    engine: LlamaEngine,
    messages: Sequence[dict[str, str]],
    params: SamplingParams,
    publish: Callable[[TokenPiece], bool],
    started_generation: Generation | None = None,
) -> tuple[InferenceResult, str]:
    """Generate one answer (or finish ``started_generation`` of it), handing each piece to
    ``publish`` until it returns False; return the answer as sent (text and tokens), with time
    to first token and decode speed, and why it ended.
    """
    started = time.perf_counter()
    generation = started_generation or engine.stream(messages, params)
    first_token_at: float | None = None
    pieces: list[str] = []
    tokens = 0
    finish = "cancelled"
    for piece in generation:
        if first_token_at is None and piece.tokens:
            first_token_at = time.perf_counter()
        if not publish(piece):
            break
        pieces.append(piece.text)
        tokens += piece.tokens
    else:
        finish = generation.finish_reason or "stop"
    ended = time.perf_counter()
    decode_s = 0.0 if first_token_at is None else ended - first_token_at
    result = InferenceResult(
        text="".join(pieces),
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=tokens,
        cache_hit=False,
        ttft_ms=None if first_token_at is None else (first_token_at - started) * 1000,
        decode_tokens_per_s=(tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else None,
    )
    return result, finish


def _fill_cache(
    cache: SemanticCache | None, model: LocalModel, claimed: ClaimedJob, result: InferenceResult
) -> None:
    if cache is not None:
        cache.store(
            model.sha256,
            claimed.prompt,
            cache_params_key(),
            result.text,
            result.completion_tokens,
            renter=claimed.job.renter,
        )


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
