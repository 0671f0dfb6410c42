"""Retry policy shared by every step: retry outages, never a refused job or a bad proof."""

from __future__ import annotations

from typing import Any

from fabstir.errors import TransientError

RETRIES = 3
RETRY_DELAYS_S = [1, 5, 15]


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Return True when the step failed on a TransientError (RPC or storage outage, timeout)."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, TransientError)
