"""A job's artifacts are written off its thread: a write the API refuses is logged, and the job
does not wait for it or fail because of it."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from tasks import _progress
from tasks._progress import GenerationProgress, write_summary


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _warnings_about(
    caplog: pytest.LogCaptureFixture, job_id: int, wait_s: float = 10
) -> list[logging.LogRecord]:
    deadline = time.monotonic() + wait_s
    while True:
        found = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _summary(job_id: int) -> None:
    write_summary(job_id, f"# Job {job_id}\n", "What the job cost.")


def _progress_artifact(job_id: int) -> None:
    GenerationProgress(job_id, max_tokens=16).complete()


# The writes run outside a flow here (a run needs a server), which Prefect warns about.
@pytest.mark.filterwarnings("ignore:Artifact creation outside:FutureWarning")
@pytest.mark.parametrize(
    ("write", "warning"),
    [(_summary, "job summary not written"), (_progress_artifact, "progress artifact not written")],
)
def test_an_artifact_the_api_refuses_is_logged_and_the_job_goes_on(
    caplog: pytest.LogCaptureFixture, write: Callable[[int], None], warning: str
) -> None:
    job_id = 7
    # A real refusal: nothing listens on the port, and the client gives up at once.
    unreachable = f"http://127.0.0.1:{_closed_port()}/api"
    writer_free = threading.Event()
    with (
        temporary_settings(updates={PREFECT_API_URL: unreachable, PREFECT_CLIENT_MAX_RETRIES: 0}),
        caplog.at_level(logging.WARNING, logger="tasks._progress"),
    ):
        # The writer is busy: the job must go on without its write having been tried.
        _progress._writer.submit(writer_free.wait, 10)
        write(job_id)
        assert not _warnings_about(caplog, job_id, wait_s=0), "the job waited for the write"
        writer_free.set()
        warnings = _warnings_about(caplog, job_id)

    assert [record.getMessage().split(":")[0] for record in warnings] == [warning]


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[object, ...]]]:
    """The writes handed to the background writer, recorded instead of sent: what is checked
    is which are asked for, and when (the sending is tested above)."""
    asked: list[tuple[str, tuple[object, ...]]] = []

    def record(write: Callable[..., object], *args: object, **_: object) -> Future[None]:
        asked.append((write.__name__, args))
        done: Future[None] = Future()
        done.set_result(None)
        return done

    monkeypatch.setattr(_progress, "_in_background", record)
    return asked


def test_the_progress_artifact_is_first_written_a_while_after_the_first_token(
    asked: list[tuple[str, tuple[object, ...]]],
) -> None:
    progress = GenerationProgress(3, max_tokens=10)
    time.sleep(_progress.UPDATE_EVERY_S)  # made long before its first token, as at a handshake

    progress.report(1)
    assert asked == [], "no write beside the first token"
    time.sleep(_progress.UPDATE_EVERY_S)
    progress.report(5)
    assert [(name, args[:3]) for name, args in asked] == [
        ("_create", ("progress", "job-3-progress", 50.0))
    ]
    time.sleep(_progress.UPDATE_EVERY_S)
    progress.report(8)
    assert asked[-1] == ("_update", (80.0,))


def test_a_short_answer_costs_its_progress_artifact_one_write(
    asked: list[tuple[str, tuple[object, ...]]],
) -> None:
    progress = GenerationProgress(4, max_tokens=10)
    for tokens in range(1, 5):
        progress.report(tokens)
    progress.complete()
    assert [(name, args[2]) for name, args in asked] == [("_create", 100.0)]
