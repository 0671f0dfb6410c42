"""A claimed job with plain values, for tests of the steps that take one."""

from __future__ import annotations

from typing import Any

from fabstir.domain import ClaimedJob, Job, JobState

HASH = "0x" + "ab" * 32


def claimed_job(
    job_id: int = 7, *, prompt: str = "hello", model_name: str = "tiny", **fields: Any
) -> ClaimedJob:
    """A job claimed by this host; ``fields`` override the job's own (renter, deadline...) or,
    for ``claim_tx``, ``claim_started_at`` and ``claim_ms``, the claim's."""
    claim = {
        key: fields.pop(key)
        for key in ("claim_tx", "claim_started_at", "claim_ms")
        if key in fields
    }
    job = Job(
        **{
            "job_id": job_id,
            "renter": "0x" + "11" * 20,
            "host": "0x" + "22" * 20,
            "model_id": HASH,
            "prompt_hash": HASH,
            "prompt_uri": "file:///prompts/p",
            "max_tokens": 16,
            "price_per_token_wei": 7,
            "deposit_wei": 112,
            "deadline": 2_000_000_000,
            "state": JobState.CLAIMED,
            "result_hash": "0x" + "00" * 32,
            "tokens_used": 0,
            **fields,
        }
    )
    return ClaimedJob(job=job, model_name=model_name, prompt=prompt, **{"claim_tx": None, **claim})
