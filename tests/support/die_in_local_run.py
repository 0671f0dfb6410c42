"""Fault injection for the zombie-run test: run one job the way `fabstir-node run` does (a run of
the inference-job deployment executed in a thread of this process, heartbeats sent by the
runner) and SIGKILL the process right after inference, so the run is left Running with no
process behind it and no more heartbeats.

    python tests/support/die_in_local_run.py JOB_ID HEARTBEAT_S
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from fabstir import pipeline


def main(job_id: int, heartbeat_s: int) -> None:
    real = pipeline.infer

    def then_die(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    pipeline.infer = then_die
    from deployments.runner import LocalRunner

    runner = LocalRunner("inference-job/gpu", max_concurrent=1, heartbeat_s=heartbeat_s)
    runner.start()
    runner.run_now(job_id).result()
    sys.exit("the job finished: the fault was never injected")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
