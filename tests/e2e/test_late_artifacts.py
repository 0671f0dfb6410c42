"""A job's artifacts written after its flow ended (and closed its Prefect client) still land, and
a flow that holds its runs' last writes sends them once the run has ended, however it ended."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from prefect import flow, task

from tasks import _progress
from tasks._progress import GenerationProgress, send_writes_held_for_the_run, write_summary
from tests.e2e.conftest import artifact_written

pytestmark = pytest.mark.e2e

JOB_ID = 424242


@task
def summarise() -> None:
    write_summary(JOB_ID, "# late summary", "Written after the run ended.")
    progress = GenerationProgress(JOB_ID, max_tokens=4)
    progress.report(4)
    progress.complete()


@flow
def short_job() -> None:
    summarise()


def test_writes_queued_until_after_the_flow_ended_land_on_its_task_run(
    prefect_server: None,
) -> None:
    since = datetime.now(UTC)
    writer_free = threading.Event()
    # Hold the writer until the flow has ended: the flow closes the client it opened.
    _progress._writer.submit(writer_free.wait, 30)
    short_job()
    writer_free.set()

    summary = artifact_written(f"job-{JOB_ID}", since)
    progress = artifact_written(f"job-{JOB_ID}-progress", since, lambda a: a.data == 100.0)
    assert summary.type == "markdown" and summary.data == "# late summary"
    assert summary.task_run_id is not None and progress.type == "progress"


HELD_JOB_ID = 424243
WRITER_LANDS_S = 1.0  # far longer than the writer takes to land a summary on this server


@task
def summarise_and_look(since: datetime) -> bool:
    """Write the job's summary, wait as long as the writer would need, and say whether it is
    there."""
    write_summary(HELD_JOB_ID, "# held summary", "Written once the run has ended.")
    time.sleep(WRITER_LANDS_S)
    from prefect.artifacts import Artifact

    artifact = Artifact.get(f"job-{HELD_JOB_ID}")
    return artifact is not None and artifact.updated is not None and artifact.updated >= since


@flow(
    on_completion=[send_writes_held_for_the_run],
    on_failure=[send_writes_held_for_the_run],
    on_crashed=[send_writes_held_for_the_run],
    on_cancellation=[send_writes_held_for_the_run],
)
def job_holding_its_last_writes(since: datetime, fail: bool) -> bool:
    landed = summarise_and_look(since)
    if fail:
        raise RuntimeError(f"the run failed after its summary (landed early: {landed})")
    return landed


@pytest.mark.parametrize("fail", [False, True])
def test_a_runs_held_writes_land_once_it_has_ended(prefect_server: None, fail: bool) -> None:
    since = datetime.now(UTC)
    state = job_holding_its_last_writes(since, fail, return_state=True)

    assert state.is_failed() is fail
    landed_early = str(state.result(raise_on_failure=False)) if fail else state.result()
    assert landed_early in (False, "the run failed after its summary (landed early: False)"), (
        "the summary landed before the run had ended"
    )
    summary = artifact_written(f"job-{HELD_JOB_ID}", since)
    assert summary.data == "# held summary"
    assert summary.task_run_id is not None, "still the writing step's artifact"
