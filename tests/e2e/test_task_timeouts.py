"""Step time limits where `fabstir-node run` executes jobs: in a thread of the node.

Prefect cannot use SIGALRM outside the main thread; it raises the timeout in the step's thread
when the call in progress returns (tasks/_policy.py). For the infer step that is between two
tokens, so a generation that outlives the step's limit is stopped there, and the operator's log
gets the timeout error, not Prefect's per-step warning about threads.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import Log

import flows.inference_job
from deployments.bootstrap import bootstrap
from deployments.runner import LocalRunner
from fabstir.domain import JobState
from fabstir.settings import load_settings
from tasks._progress import GenerationProgress
from tasks.infer import infer
from tests.e2e.conftest import Node

pytestmark = pytest.mark.e2e

SLOW_TOKEN_S = 0.3


def _run_logs(flow_run_id: UUID, until: str, timeout_s: float = 30) -> list[Log]:
    """The run's logs (its steps' included), once one containing ``until`` has arrived: the
    node sends logs in batches every 2 s."""
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            if any(until in log.message for log in logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.5)


def test_a_generation_over_the_infer_limit_stops_between_tokens_in_a_node_thread(
    node: Node, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap(load_settings().orchestration)
    # Fault: the tiny model writes its answer in milliseconds; a GPU this slow takes 0.3 s a
    # token, so the 16-token answer needs ~5 s against a 1 s limit.
    report = GenerationProgress.report
    reported: list[int] = []

    def slow_report(progress: GenerationProgress, tokens: int) -> None:
        reported.append(tokens)
        time.sleep(SLOW_TOKEN_S)
        report(progress, tokens)

    monkeypatch.setattr(GenerationProgress, "report", slow_report)
    monkeypatch.setattr(flows.inference_job, "infer", infer.with_options(timeout_seconds=1))
    job_id = node.post("the cat sat on the mat")

    since = datetime.now(UTC)
    runner = LocalRunner("inference-job/gpu", max_concurrent=1, heartbeat_s=30)
    runner.start()
    try:
        with pytest.raises(TimeoutError, match="timed out after 1"):
            runner.run_now(job_id).result(timeout=120)
    finally:
        runner.stop()

    assert 0 < len(reported) < node.renter.get_job(job_id).max_tokens, "stopped mid-answer"
    assert node.renter.get_job(job_id).state is JobState.CLAIMED
    with get_client(sync_client=True) as client:
        (run,) = [
            run
            for run in client.read_flow_runs()
            if run.name == f"job-{job_id}" and run.created is not None and run.created >= since
        ]
    assert run.state is not None and run.state.is_failed()
    logs = _run_logs(run.id, until="exceeded timeout")
    assert any("Task run exceeded timeout of 1.0 second(s)" in log.message for log in logs)
    assert not [log.message for log in logs if "running in a worker thread" in log.message]
