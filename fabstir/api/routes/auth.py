"""``POST /v1/auth``: trade a renter's signed access request for a bearer token to its job."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from fabstir.api.dependencies import Context
from fabstir.api.schemas import AuthRequest, AuthResponse

router = APIRouter(tags=["auth"])


@router.post("/v1/auth", response_model=AuthResponse)
async def authenticate(body: AuthRequest, ctx: Context) -> AuthResponse:
    """Return a token valid only for ``job_id``, if its renter signed this request.

    A job still posted is claimed for its renter here, once, if this host can serve it (model,
    price, deposit, capacity, and the renter's share of claimed jobs not yet asked for): its
    requests then start answering at once. A job this host cannot serve is refused and left
    unclaimed.
    """
    job = await run_in_threadpool(ctx.services.chain.get_job, body.job_id)
    ctx.access.verify(body, job)
    job = await run_in_threadpool(ctx.claims.claim, body.job_id, job.renter)
    token, grant = ctx.access.grant(body, job)
    return AuthResponse(token=token, job_id=grant.job_id, expires_at=grant.expires_at)
