"""Policy shared by every step: retry outages, never a refused job or a bad proof; time limits.

``timeout_seconds`` on a step holds in both places a step runs. In a worker's flow process the
step runs in the main thread and Prefect stops it with SIGALRM; in `fabstir-node run` (the
LocalRunner) it runs in a thread of the node, and Prefect raises the timeout in that thread
from a watcher thread instead, which takes effect when the call in progress returns to Python:
between two generated tokens, two download chunks, two RPC requests (each bounded by its own
client timeout). Either way the step fails with ``TaskRunTimeoutError`` ("Task run exceeded
timeout of N second(s)"). Prefect warns about the thread case at every step's start, eight
warnings per job that ask the operator to do nothing: :class:`_ThreadTimeoutNotice` drops that
one message.
"""

from __future__ import annotations

import logging
from typing import Any

from fabstir.errors import TransientError

RETRIES = 3
RETRY_DELAYS_S = [1, 5, 15]

# The format string of Prefect 3.9's warning (prefect/task_engine.py, run_context); a later
# Prefect that words it differently shows it again rather than hiding anything else.
THREAD_TIMEOUT_WARNING = "Timeout of %s seconds configured for this task, but the task is running"


class _ThreadTimeoutNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(THREAD_TIMEOUT_WARNING))


logging.getLogger("prefect.task_runs").addFilter(_ThreadTimeoutNotice())


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Return True when the step failed on a TransientError (RPC or storage outage, timeout)."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, TransientError)
