from __future__ import annotations

from prefect import flow

from fabstir.domain import Receipt
from tasks.cache_lookup import cache_lookup
from tasks.claim import claim
from tasks.fetch_model import fetch_model
from tasks.infer import infer
from tasks.prove import prove
from tasks.settle import settle
from tasks.store_result import store_result


@flow(name="inference-job", flow_run_name="job-{job_id}")
def inference_job(job_id: int) -> Receipt:
    """Claim, answer, store, prove and settle one job; a settled job returns its receipt."""
    claimed = claim(job_id)
    if claimed.receipt is not None:
        return claimed.receipt
    model = fetch_model(claimed)
    cached = cache_lookup(model, claimed)
    result = infer(claimed, model, cached)
    stored = store_result(claimed, model, result)
    proof = prove(claimed, model, stored, result)
    return settle(claimed, stored, result, proof)
