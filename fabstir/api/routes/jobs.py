"""``GET /v1/jobs/{id}`` (public status), ``/result`` and ``/proof`` (the job's renter only)."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fabstir.api.auth import Grant
from fabstir.api.dependencies import Caller, Context
from fabstir.api.schemas import JobResult, JobStatus
from fabstir.api.services import ApiContext
from fabstir.errors import AccessDenied, ObjectMissing
from fabstir.pipeline import proof_path_for, stored_record

router = APIRouter(tags=["jobs"])

JobId = Annotated[int, Path(ge=0, lt=2**256, description="The on-chain job id.")]


@router.get("/v1/jobs/{job_id}", response_model=JobStatus)
async def job_status(job_id: JobId, ctx: Context) -> JobStatus:
    """Return the job's state on chain and the transactions that claimed and settled it."""
    return await run_in_threadpool(_status, ctx, job_id)


def _status(ctx: ApiContext, job_id: int) -> JobStatus:
    chain = ctx.services.chain
    job = chain.get_job(job_id)
    # No job is older than the contracts; the claim's block is not stored on chain (every slot
    # of the job record is full, and a fresh one costs the claim 20k gas).
    claims = chain.marketplace_events.JobClaimed().get_logs(
        from_block=chain.deployment.deploy_block, argument_filters={"jobId": job_id}
    )
    receipt = chain.find_settlement(job_id)
    return JobStatus(
        job_id=job_id,
        state=job.state.name.lower(),
        renter=job.renter,
        host=job.host,
        model_id=job.model_id,
        max_tokens=job.max_tokens,
        tokens_used=job.tokens_used,
        price_per_token=job.price_per_token_wei,
        payment_token=job.payment_token,
        claim_tx=claims[-1]["transactionHash"].to_0x_hex() if claims else None,
        settle_tx=receipt.settle_tx if receipt else None,
        result_uri=receipt.result_uri if receipt else None,
        result_hash=receipt.result_hash if receipt else None,
    )


def _own(grant: Grant, job_id: int) -> None:
    if grant.job_id != job_id:
        raise AccessDenied("the token is for another job", code="token_for_other_job")


@router.get("/v1/jobs/{job_id}/result", response_model=JobResult)
async def job_result(
    job_id: JobId,
    grant: Caller,
    ctx: Context,
) -> JobResult:
    """Return the stored result record of the job (once stored; before settlement too)."""
    _own(grant, job_id)
    return await run_in_threadpool(_result, ctx, job_id)


def _result(ctx: ApiContext, job_id: int) -> JobResult:
    found = stored_record(ctx.services.store, ctx.services.chain.get_job(job_id))
    if found is None:
        raise ObjectMissing("no result stored for this job yet", code="result_not_ready")
    record = found.record
    return JobResult(
        job_id=job_id,
        output=record.output,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        cache_hit=record.cache_hit,
        result_uri=found.stored.uri,
        result_hash=found.stored.sha256,
        record_cbor=base64.b64encode(found.data).decode(),
    )


@router.get("/v1/jobs/{job_id}/proof", responses={200: {"content": {"application/json": {}}}})
async def job_proof(
    job_id: JobId,
    grant: Caller,
    ctx: Context,
) -> Response:
    """Return the job's EZKL billing proof (JSON, as the prover wrote it)."""
    _own(grant, job_id)
    path = proof_path_for(ctx.services.proofs_dir, job_id)
    try:
        proof = await run_in_threadpool(path.read_bytes)
    except FileNotFoundError:
        raise ObjectMissing("no proof for this job yet", code="proof_not_ready") from None
    return Response(proof, media_type="application/json")
