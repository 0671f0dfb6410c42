"""``POST /v1/auth``: trade a renter's signed access request for a bearer token to its job."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from fabstir.api.dependencies import Context
from fabstir.api.schemas import AuthRequest, AuthResponse
from fabstir.api.services import ApiContext
from fabstir.domain import Job, JobState

router = APIRouter(tags=["auth"])


@router.post("/v1/auth", response_model=AuthResponse)
async def authenticate(body: AuthRequest, ctx: Context) -> AuthResponse:
    """Return a token valid only for ``job_id``, if its renter signed this request.

    A job still posted is claimed for its renter here, once, if this host can serve it (model,
    price, deposit, capacity, and the renter's share of claimed jobs not yet asked for): its
    requests then start answering at once. A job this host cannot serve is refused and left
    unclaimed.

    The job's flow is started here too, where the node runs flows, to wait for the request
    (``request_wait_s``), so its Prefect start-up is not between the request and its first
    token; the token is returned once that flow waits, or after READY_WAIT_S.
    """
    job = await run_in_threadpool(ctx.services.chain.get_job, body.job_id)
    ctx.access.verify(body, job)
    job = await run_in_threadpool(ctx.claims.claim, body.job_id, job.renter)
    token, grant = ctx.access.grant(body, job)
    await _start_waiting_flow(ctx, job)
    return AuthResponse(token=token, job_id=grant.job_id, expires_at=grant.expires_at)


# A Prefect server that is slow to start the run (a busy SQLite) must not hold the handshake:
# past this, the request waits for the run instead.
READY_WAIT_S = 5.0


async def _start_waiting_flow(ctx: ApiContext, job: Job) -> None:
    start = ctx.services.start_waiting_job
    wait_s = ctx.settings.request_wait_s
    if start is None or wait_s == 0 or job.state is not JobState.CLAIMED:
        return
    streams = ctx.services.streams
    if streams.prepare(
        job.job_id, partial(start, job.job_id, wait_s), most=ctx.settings.waiting_flows
    ):
        await run_in_threadpool(streams.wait_until_waiting, job.job_id, READY_WAIT_S)
