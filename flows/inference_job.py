from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from blocks import current_settings
from fabstir.domain import Receipt, SettlementQueued
from fabstir.settings import MAX_REQUEST_WAIT_S
from tasks._events import emit_job_failed
from tasks._progress import send_writes_held_for_the_run
from tasks.cache_lookup import cache_lookup
from tasks.claim import claim
from tasks.fetch_model import fetch_model
from tasks.infer import infer
from tasks.prove import prove
from tasks.qa_record import record_quality
from tasks.queue_settlement import queue_settlement
from tasks.settle import settle
from tasks.store_result import store_result


# Results are not persisted: every step checks chain and storage state itself (Prefect records
# a step only after its side effect). Saying so spares the engine a server lookup per run.
@flow(
    name="inference-job",
    flow_run_name="job-{job_id}",
    persist_result=False,
    on_completion=[send_writes_held_for_the_run],
    on_failure=[emit_job_failed, send_writes_held_for_the_run],
    on_crashed=[emit_job_failed, send_writes_held_for_the_run],
    on_cancellation=[send_writes_held_for_the_run],
)
def inference_job(
    job_id: int, await_request_s: Annotated[float, Field(ge=0, le=MAX_REQUEST_WAIT_S)] = 0.0
) -> Receipt | SettlementQueued | None:
    """Claim, answer, store, prove and settle one job; a settled job returns its receipt. With
    batch settlement on (FABSTIR_SETTLEMENT__BATCH_SIZE 4 or 16) the job is queued after its
    result is stored, for the settle-batch flow, unless its deadline is near.

    A run the renter API starts at the renter's handshake (``await_request_s`` > 0) claims the
    job by checking it on chain, fetches the model, looks for an earlier answer, and then waits
    that long in its infer step for the renter's request, which brings the prompt; if none comes
    it ends there, returning None, and a later request starts a run of its own.
    """
    claimed = claim(job_id, requested=await_request_s > 0)
    if claimed.receipt is not None:
        return claimed.receipt
    model = fetch_model(claimed)
    cached = cache_lookup(model, claimed)
    result = infer(claimed, model, cached, await_request_s)
    if result is None:
        return None
    stored = store_result(claimed, model, result)
    if current_settings().settlement.batch_size > 1:
        queued = queue_settlement(claimed, stored, result)
        if queued is not None:
            return queued
    proof = prove(claimed, stored, result)
    receipt = settle(claimed, stored, result, proof)
    record_quality(claimed, result, receipt)
    return receipt
