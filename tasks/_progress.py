"""A progress artifact per generating job, so the Prefect UI shows an answer as it grows."""

from __future__ import annotations

import time

from prefect.artifacts import create_progress_artifact, update_progress_artifact

# Each update is an API call: at most two a second keeps generation off the API's back.
UPDATE_EVERY_S = 0.5


class GenerationProgress:
    """The job's progress artifact: tokens generated out of its max_tokens."""

    def __init__(self, job_id: int, max_tokens: int) -> None:
        self._max_tokens = max_tokens
        self._artifact_id = create_progress_artifact(
            progress=0.0,
            key=f"job-{job_id}-progress",
            description=f"Tokens generated for job {job_id}, of at most {max_tokens}.",
        )
        self._last_update = time.monotonic()

    def report(self, tokens: int) -> None:
        now = time.monotonic()
        if now - self._last_update >= UPDATE_EVERY_S:
            self._last_update = now
            update_progress_artifact(self._artifact_id, progress=100.0 * tokens / self._max_tokens)

    def complete(self) -> None:
        """Show the answer as finished, also when it stopped before max_tokens."""
        update_progress_artifact(self._artifact_id, progress=100.0)
