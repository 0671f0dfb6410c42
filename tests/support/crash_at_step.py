"""Fault injection for the crash-recovery tests: run one job's flow in this process and SIGKILL
the process right after one step's core call returns, i.e. after its side effect (a claim
transaction, a stored object, a settlement) and before Prefect records the step.

    python tests/support/crash_at_step.py STEP JOB_ID
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from fabstir import pipeline

CORE_CALL_OF_STEP = {
    "claim": "claim_job",
    "fetch_model": "fetch_model",
    "cache_lookup": "look_up_cache",
    "infer": "infer",
    "store_result": "store_result",
    "prove": "prove_billing",
    "settle": "settle_job",
}


def main(step: str, job_id: int) -> None:
    name = CORE_CALL_OF_STEP[step]
    real = getattr(pipeline, name)

    def then_die(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(pipeline, name, then_die)
    from flows.inference_job import inference_job

    inference_job(job_id)
    sys.exit("the flow finished: the fault was never injected")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
