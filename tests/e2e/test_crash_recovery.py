"""Exactly once under crashes: a job whose flow process is killed during any of its seven steps,
then run again, is claimed once, settled once, paid once and stored once.

The kill is a fault injection (tests/support/crash_at_step.py): the flow runs in a child process
that SIGKILLs itself right after the step's side effect, before Prefect records the step; the
re-run happens here, as the crash automation or reconcile would start it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from prefect.settings import PREFECT_API_URL

from fabstir.chain import load_artifact
from fabstir.domain import JobState
from flows.inference_job import inference_job
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import PRICE_PER_TOKEN_WEI, Node
from tests.support.crash_at_step import CORE_CALL_OF_STEP

pytestmark = pytest.mark.e2e


def _events(node: Node, name: str, job_id: int) -> list:
    marketplace = node.w3.eth.contract(
        address=node.deployment.job_marketplace, abi=load_artifact("JobMarketplace").abi
    )
    return getattr(marketplace.events, name)().get_logs(
        from_block=0, argument_filters={"jobId": job_id}
    )


@pytest.mark.parametrize("step", list(CORE_CALL_OF_STEP))
def test_a_job_killed_during_any_step_completes_once_when_run_again(node: Node, step: str) -> None:
    job_id = node.post("the cat sat on the mat")
    deposit = node.renter.get_job(job_id).deposit_wei
    host_credit = node.host.credit_of(node.host.address)
    renter_credit = node.host.credit_of(node.renter.address)

    crashed = subprocess.run(
        [sys.executable, "tests/support/crash_at_step.py", step, str(job_id)],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "PREFECT_API_URL": PREFECT_API_URL.value(),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]

    receipt = inference_job(job_id)

    assert len(_events(node, "JobClaimed", job_id)) == 1
    assert len(_events(node, "JobSettled", job_id)) == 1
    job = node.renter.get_job(job_id)
    assert job.state is JobState.SETTLED and receipt.tokens == job.tokens_used > 0
    payment = receipt.tokens * PRICE_PER_TOKEN_WEI
    fee = payment * node.host.fee_bps() // 10_000
    assert node.host.credit_of(node.host.address) - host_credit == payment - fee
    assert node.host.credit_of(node.renter.address) - renter_credit == deposit - payment
    assert node.store.list("results") == [node.store.key_of(node.renter.result_uri(job_id))]
