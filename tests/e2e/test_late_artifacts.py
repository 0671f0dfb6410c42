"""A job's artifacts written after its flow ended (and closed its Prefect client) still land."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from prefect import flow, task

from tasks import _progress
from tasks._progress import GenerationProgress, write_summary
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
