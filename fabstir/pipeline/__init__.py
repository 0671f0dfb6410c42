"""The seven steps of an inference job as plain functions, each idempotent on the job id.

Each function checks chain or storage state before acting, so a crashed run can simply run again.
Prefect tasks in ``tasks/`` wrap these one to one.
"""

from fabstir.pipeline.answer import (
    DETERMINISTIC_TEMPERATURE,
    cache_params_key,
    earlier_answer,
    fetch_model,
    infer,
    look_up_cache,
    stored_record,
    take_request,
)
from fabstir.pipeline.claim import (
    attach_prompt,
    claim_for_renter,
    claim_job,
    claim_requested_job,
    read_prompt,
)
from fabstir.pipeline.delivery import (
    BillableJob,
    batch_proof_path_for,
    billing_statement,
    erase_renter_data,
    proof_path_for,
    prove_billing,
    prove_billing_batch,
    settle_batch,
    settle_job,
    store_result,
)
from fabstir.pipeline.settlement import (
    BatchSettlement,
    ReadySettlement,
    SettlementQueue,
    plan_batches,
    queue_settlement,
    settle_queued,
)

__all__ = [
    "DETERMINISTIC_TEMPERATURE",
    "BatchSettlement",
    "BillableJob",
    "ReadySettlement",
    "SettlementQueue",
    "attach_prompt",
    "batch_proof_path_for",
    "billing_statement",
    "cache_params_key",
    "claim_for_renter",
    "claim_job",
    "claim_requested_job",
    "earlier_answer",
    "erase_renter_data",
    "fetch_model",
    "infer",
    "look_up_cache",
    "plan_batches",
    "proof_path_for",
    "prove_billing",
    "prove_billing_batch",
    "queue_settlement",
    "read_prompt",
    "settle_batch",
    "settle_job",
    "settle_queued",
    "store_result",
    "stored_record",
    "take_request",
]
