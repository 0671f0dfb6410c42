"""Artifacts written off the job's thread: a progress artifact per generating job, so the Prefect
UI shows an answer as it grows, and each job's summary.

Every write is an API call (5–80 ms on a busy server): they go to one background thread, in
order, so none of them delays the first token, the tokens after it, or the end of the job.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

log = logging.getLogger(__name__)

# At most two updates a second keeps generation off the API's back.
UPDATE_EVERY_S = 0.5

# One thread, so writes land in the order they were asked for (a progress artifact's last update
# after its earlier ones). The job waits for none of them: a write still queued when the job ends
# lands a few ms later, while Prefect records the job's last steps.
_writer = ThreadPoolExecutor(1, thread_name_prefix="artifacts")


def _in_background(write: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
    # The copied context carries the task run the artifact belongs to, and its API client.
    context = contextvars.copy_context()
    return _writer.submit(context.run, write, *args, **kwargs)


def _warn_if_failed(written: Future[Any], what: str, job_id: int) -> None:
    # The UI's view of a paid job must not fail the job, nor go missing without a word.
    if (exc := written.exception()) is not None:
        log.warning("%s not written: %s", what, exc, extra={"job_id": job_id})


def write_summary(job_id: int, markdown: str, description: str) -> None:
    """Attach the job's summary (key ``job-<id>``) to the calling task run."""
    written = _in_background(
        create_markdown_artifact, markdown, key=f"job-{job_id}", description=description
    )
    written.add_done_callback(lambda done: _warn_if_failed(done, "job summary", job_id))


class GenerationProgress:
    """The job's progress artifact: tokens generated out of its max_tokens."""

    def __init__(self, job_id: int, max_tokens: int) -> None:
        self._job_id = job_id
        self._max_tokens = max_tokens
        self._artifact_id = _in_background(
            create_progress_artifact,
            progress=0.0,
            key=f"job-{job_id}-progress",
            description=f"Tokens generated for job {job_id}, of at most {max_tokens}.",
        )
        self._last_update = time.monotonic()

    def report(self, tokens: int) -> None:
        now = time.monotonic()
        if now - self._last_update >= UPDATE_EVERY_S:
            self._last_update = now
            _in_background(self._update, 100.0 * tokens / self._max_tokens)

    def complete(self) -> None:
        """Show the answer as finished, also when it stopped before max_tokens."""
        completed = _in_background(self._update, 100.0)
        completed.add_done_callback(
            lambda done: _warn_if_failed(done, "progress artifact", self._job_id)
        )

    def _update(self, progress: float) -> None:
        # Runs on the writer thread after the creation, which it follows in the queue.
        artifact_id: UUID = self._artifact_id.result()
        update_progress_artifact(artifact_id, progress=progress)
