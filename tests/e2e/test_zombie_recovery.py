"""Crash detection end to end: a job whose process dies mid-run is marked Crashed by the zombie
automation and run again by the crash automation, which settles it exactly once.

Everything is real (Prefect server, the automations bootstrap applies, a process worker, the
devnet) except the death itself, a fault injected by tests/support/die_in_local_run.py: a
`fabstir-node run`-style runner SIGKILLs itself right after inference. The runner heartbeats
every 4 s instead of 30 s so the run is declared dead after 12 s rather than 90 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL

from deployments.bootstrap import AUTOMATIONS_DIR, apply_automations, bootstrap
from fabstir.chain import load_artifact
from fabstir.domain import JobState
from fabstir.service import stop_process
from fabstir.settings import load_settings
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import PRICE_PER_TOKEN_WEI, Node

pytestmark = pytest.mark.e2e

PREFECT = str(Path(sys.executable).with_name("prefect"))
HEARTBEAT_S = 4  # Prefect refuses a proactive window under 10 s


@pytest.fixture
def short_zombie_window(prefect_server: None) -> Iterator[None]:
    """Deployments and automations as bootstrap makes them, with a 12 s zombie window.

    The server is the session's: the production window is restored afterwards, so no other
    test's run (whose flow engine heartbeats every 30 s at the fastest) is taken for dead.
    """
    heartbeat_s = load_settings().orchestration.heartbeat_s
    bootstrap(load_settings().orchestration)
    apply_automations(AUTOMATIONS_DIR, heartbeat_s=HEARTBEAT_S)
    try:
        yield
    finally:
        apply_automations(AUTOMATIONS_DIR, heartbeat_s=heartbeat_s)


def _job_runs(deployment_id: object, job_id: int, since: datetime) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(),
        )
    return sorted(
        (
            run
            for run in runs
            if run.parameters.get("job_id") == job_id
            and run.created is not None
            and run.created >= since
        ),
        key=lambda run: run.created,
    )


def _wait(condition: Callable[[], bool], what: Callable[[], str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what()} within {timeout_s} s"
        time.sleep(0.5)


def _events(node: Node, name: str, job_id: int) -> list:
    marketplace = node.w3.eth.contract(
        address=node.deployment.job_marketplace, abi=load_artifact("JobMarketplace").abi
    )
    return getattr(marketplace.events, name)().get_logs(
        from_block=0, argument_filters={"jobId": job_id}
    )


def test_a_job_whose_process_dies_is_marked_crashed_and_settled_once_by_a_new_run(
    node: Node, short_zombie_window: None, tmp_path: Path
) -> None:
    job_id = node.post("the cat sat on the mat")
    deposit = node.renter.get_job(job_id).deposit_wei
    host_credit = node.host.credit_of(node.host.address)
    renter_credit = node.host.credit_of(node.renter.address)
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name("inference-job/gpu").id
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    since = datetime.now(UTC)

    died = subprocess.run(
        [sys.executable, "tests/support/die_in_local_run.py", str(job_id), str(HEARTBEAT_S)],
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
    assert node.renter.get_job(job_id).state is JobState.CLAIMED

    def crashed_and_rerun() -> bool:
        runs = _job_runs(deployment_id, job_id, since)
        return len(runs) == 2 and runs[0].state_type is not None and runs[0].state.is_crashed()

    # Typically 15-20 s (12 s of silence, then the server's 5 s proactive sweep); the margin is
    # for a loaded machine, where the server's event consumers fall behind.
    _wait(
        crashed_and_rerun,
        lambda: (
            f"the dead run was not marked Crashed and run again: "
            f"{[(run.name, run.state) for run in _job_runs(deployment_id, job_id, since)]}"
        ),
        120,
    )
    first, rerun = _job_runs(deployment_id, job_id, since)
    assert first.state is not None and "No heartbeat for 12 s" in (first.state.message or "")
    # The new run waits in the pool until a worker takes it; from here on the production window
    # applies (see short_zombie_window), so the worker's run is judged as in production.
    apply_automations(AUTOMATIONS_DIR, heartbeat_s=load_settings().orchestration.heartbeat_s)
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--type=process", "--pool=gpu", "-q", "default"],
            cwd=REPO_ROOT,
            env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(
            lambda: _job_runs(deployment_id, job_id, since)[1].state.is_final(),
            lambda: "the new run did not finish",
            120,
        )
    finally:
        stop_process(worker, grace_s=30)

    runs = _job_runs(deployment_id, job_id, since)
    assert [run.state_type.value for run in runs] == ["CRASHED", "COMPLETED"], (
        tmp_path / "worker.log"
    ).read_text()[-3000:]
    assert runs[1].id == rerun.id and runs[1].name == f"job-{job_id}"
    assert len(_events(node, "JobClaimed", job_id)) == 1
    assert len(_events(node, "JobSettled", job_id)) == 1
    job = node.renter.get_job(job_id)
    assert job.state is JobState.SETTLED and job.tokens_used > 0
    payment = job.tokens_used * PRICE_PER_TOKEN_WEI
    fee = payment * node.host.fee_bps() // 10_000
    assert node.host.credit_of(node.host.address) - host_credit == payment - fee
    assert node.host.credit_of(node.renter.address) - renter_credit == deposit - payment
    assert node.store.list("results") == [node.store.key_of(node.renter.result_uri(job_id))]
