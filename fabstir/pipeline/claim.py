"""The claim step: check that a job is payable and servable, read its prompt, claim it.

A direct job is claimed earlier, when its renter authenticates to the API
(:func:`claim_for_renter`), before the prompt exists here; its flow's claim step then finds the
job already ours and only reads the prompt, or, in a run started at that handshake
(:func:`claim_requested_job`), checks the job without its prompt, which the renter's request
brings to the infer step (:func:`attach_prompt`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

from fabstir.domain import ZERO_ADDRESS, ClaimedJob, Job, JobState
from fabstir.errors import JobRejected, ObjectMissing, ResultIntegrityError
from fabstir.models import ModelManager
from fabstir.storage import ObjectStore, get_verified, sha256_hex

if TYPE_CHECKING:
    from fabstir.chain import ChainClient
    from fabstir.monitoring import CapacityGuard

log = logging.getLogger(__name__)


class Headroom(Protocol):
    """What a host checks before it takes on a new job (the machine's memory; the API also
    counts the jobs it holds for renters)."""

    def check(self, job_id: int) -> None:
        """Raise ``JobRejected(code="no_capacity")`` when no new job should be claimed (the
        API's per-renter share raises ``LimitExceeded(code="too_many_claims")``)."""


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
    spec_name = _check_servable(chain, catalog, job, our_price_per_token_wei)
    try:
        document = read_prompt(store, job)
    except ObjectMissing as exc:
        raise JobRejected(
            "prompt not found at the job's URI",
            code="prompt_missing",
            prompt_uri=job.prompt_uri,
            job_id=job_id,
        ) from exc
    prompt = _prompt_text(document, job_id)
    return _hold(chain, job, spec_name, prompt, capacity, started_at, started)


def claim_requested_job(
    chain: ChainClient, catalog: ModelManager, job_id: int, our_price_per_token_wei: int
) -> ClaimedJob:
    """The claim step of a run started at its renter's handshake, which claimed the job: check
    the job on chain as :func:`claim_job` does and return it without its prompt, which the
    renter's request brings to the infer step (``pipeline.take_request``), so no step's
    start-up lies between that request and its first token.

    Raises:
        JobRejected: as :func:`claim_job`, less the prompt's errors.
    """
    started = time.perf_counter()
    job = chain.get_job(job_id)
    spec_name = _check_servable(chain, catalog, job, our_price_per_token_wei)
    return _hold(chain, job, spec_name, None, None, None, started)


def attach_prompt(claimed: ClaimedJob, document: bytes, asked_at: float) -> ClaimedJob:
    """Return a job claimed without its prompt (:func:`claim_requested_job`) with the prompt the
    renter's request brought at ``asked_at`` (Unix time), where the answer's clock starts; its
    claim time becomes the wait between that request and this step.

    Raises:
        ResultIntegrityError: the request's prompt does not match the job's prompt hash.
        JobRejected: the prompt is not UTF-8 text (``prompt_invalid``).
    """
    job_id = claimed.job.job_id
    if sha256_hex(document) != claimed.job.prompt_hash.lower():
        raise ResultIntegrityError(
            "the request's prompt does not match the job's hash",
            job_id=job_id,
            expected=claimed.job.prompt_hash,
        )
    return claimed.model_copy(
        update={
            "prompt": _prompt_text(document, job_id),
            "claim_started_at": asked_at,
            "claim_ms": max(0.0, (time.time() - asked_at) * 1000),
        }
    )


def _prompt_text(document: bytes, job_id: int) -> str:
    try:
        return document.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobRejected("prompt is not UTF-8 text", code="prompt_invalid", job_id=job_id) from exc


def _hold(
    chain: ChainClient,
    job: Job,
    spec_name: str,
    prompt: str | None,
    capacity: Headroom | None,
    started_at: float | None,
    started: float,
) -> ClaimedJob:
    """Claim the job unless it is already ours; return it with its prompt."""
    job_id = job.job_id
    context = {"job_id": job_id}
    if job.state is JobState.SETTLED:
        log.info("job already settled by us", extra=context)
        return ClaimedJob(
            job=job,
            model_name=spec_name,
            prompt=prompt,
            claim_tx=None,
            receipt=chain.find_settlement(job_id),
        )
    timing: dict[str, float | None] = {"claim_started_at": started_at}
    if job.state is JobState.CLAIMED:
        log.info("job already claimed by us", extra=context)
        timing["claim_ms"] = (time.perf_counter() - started) * 1000
        return ClaimedJob(job=job, model_name=spec_name, prompt=prompt, claim_tx=None, **timing)
    claim_tx = _claim(chain, job_id, capacity)
    timing["claim_ms"] = (time.perf_counter() - started) * 1000
    return ClaimedJob(
        job=chain.get_job(job_id), model_name=spec_name, prompt=prompt, claim_tx=claim_tx, **timing
    )


def claim_for_renter(
    chain: ChainClient,
    catalog: ModelManager,
    job_id: int,
    our_price_per_token_wei: int,
    capacity: Headroom | None = None,
) -> Job:
    """Claim a posted job for its renter, who is connecting to this host, without its prompt
    (which comes with the renter's request); return the job as it now stands on chain.

    The same checks as :func:`claim_job`; a job already ours, claimed or settled, is returned
    as it is (a renter may authenticate again, or to read a settled result).

    Raises:
        JobRejected: as :func:`claim_job`, less the prompt's errors.
        LimitExceeded: ``capacity`` refused the renter another claim.
        ContractRevert: the contract refused the claim (simulated first, so no gas is spent).
    """
    job = chain.get_job(job_id)
    ours = job.host.lower() == chain.address.lower()
    if ours and job.state in (JobState.CLAIMED, JobState.SETTLED):
        return job
    _check_servable(chain, catalog, job, our_price_per_token_wei)
    _claim(chain, job_id, capacity)
    return chain.get_job(job_id)


def _check_servable(
    chain: ChainClient, catalog: ModelManager, job: Job, our_price_per_token_wei: int
) -> str:
    """Refuse a job this host must not run; return the name of its model."""
    context = {"job_id": job.job_id}
    if job.state in (JobState.REFUNDED, JobState.CANCELLED):
        raise JobRejected(f"job was {job.state.name.lower()}", code="job_closed", **context)
    if job.host != ZERO_ADDRESS and job.host.lower() != chain.address.lower():
        raise JobRejected(
            "job belongs to another host", code="claimed_by_other", host=job.host, **context
        )
    spec = catalog.resolve(job.model_id)
    if job.state is JobState.POSTED:
        _check_payable(chain, job, spec.id, our_price_per_token_wei)
    return spec.name


def _claim(chain: ChainClient, job_id: int, capacity: Headroom | None) -> str:
    if capacity is not None:
        capacity.check(job_id)
    claim_tx = chain.claim_job(job_id)
    log.info("job claimed", extra={"job_id": job_id, "tx": claim_tx})
    return claim_tx


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
