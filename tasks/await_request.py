from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import job_streams


# Not retried: a wait that ended without a request is the answer, not a fault.
@task(name="await-request", task_run_name="await-request-{job_id}", cache_policy=NO_CACHE)
def await_request(job_id: int, wait_s: float) -> bool:
    return job_streams().await_request(job_id, wait_s)
