"""The steps' shared policy: which failures are retried, and the one Prefect warning dropped."""

from __future__ import annotations

import logging

import pytest

import tasks._policy  # noqa: F401  (installs the filter on Prefect's task-run logger)


def _logged(caplog: pytest.LogCaptureFixture, message: str, *args: object) -> list[str]:
    logger = logging.getLogger("prefect.task_runs")
    with caplog.at_level(logging.WARNING, logger="prefect.task_runs"):
        caplog.clear()
        logger.warning(message, *args)
    return [record.getMessage() for record in caplog.records]


def test_prefects_thread_timeout_warning_is_dropped_and_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prefect 3.9.1's wording (prefect/task_engine.py), as it logs it.
    prefect_warning = (
        "Timeout of %s seconds configured for this task, but the task is running in a worker "
        "thread. Timeouts in worker threads cannot interrupt blocking operations like "
        "`time.sleep()`, network requests, or file I/O."
    )
    assert _logged(caplog, prefect_warning, 120) == []
    assert _logged(caplog, "Task run exceeded timeout of %s second(s)", 120) == [
        "Task run exceeded timeout of 120 second(s)"
    ]
    assert _logged(caplog, "Timeout of 120 seconds configured") == [
        "Timeout of 120 seconds configured"
    ]
