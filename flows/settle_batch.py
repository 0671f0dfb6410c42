from __future__ import annotations

from prefect import flow

from fabstir.domain import Receipt
from tasks.qa_record import record_quality
from tasks.settle_batch import plan_settlement, release_settled, settle_queued


@flow(name="settle-batch")
def settle_batch(flush: bool = False) -> list[Receipt]:
    """Settle the queued jobs that are due (every full batch, and a partial one once a job has
    waited FABSTIR_SETTLEMENT__MAX_WAIT_S or nears its deadline; every queued job if ``flush``),
    one proof and one transaction per batch; return their settlements."""
    receipts = []
    for job_ids in plan_settlement(flush):
        settled = settle_queued(job_ids)
        for ready, receipt in settled.jobs:
            record_quality(ready.claimed, ready.result, receipt)
            receipts.append(receipt)
        release_settled(job_ids)
    return receipts
