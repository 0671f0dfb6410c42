"""Artifacts written off the job's thread: a progress artifact per generating job, so the Prefect
UI shows an answer as it grows, and each job's summary.

Every write is an API call (5–80 ms on a busy server): they go to one background thread, in
order, so none of them delays the first token, the tokens after it, or the end of the job.
A job's last writes (its summary, its progress at 100 %) wait until its run has ended when the
flow says so (:func:`send_writes_held_for_the_run` among its state hooks): sent while the run
was still ending, the server handled them beside its record-quality step and final state change,
and without the summary write the jobs of ``benchmarks.orchestration`` took 25–35 ms less.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.settings import get_current_settings
from prefect.utilities.context import get_task_and_flow_run_ids

from tasks._api_client import busy_retry_settings

log = logging.getLogger(__name__)

# At most two updates a second keeps generation off the API's back.
UPDATE_EVERY_S = 0.5

# One thread, so writes land in the order they were asked for (a progress artifact's last update
# after its earlier ones). The job waits for none of them: a write may land after its job ended.
_writer = ThreadPoolExecutor(1, thread_name_prefix="artifacts")
# The writer's own API clients, one per API URL, open for the process's life: a write that lands
# after its flow ended must not use the flow's client, which the flow closes when it ends.
_clients: dict[str, SyncPrefectClient] = {}


# Writes held until their flow run has ended, by run id.
_held: dict[UUID, list[Callable[[], None]]] = {}
_held_lock = threading.Lock()


def _in_background(
    write: Callable[..., Any], *args: Any, after_the_run: bool = False
) -> Future[Any]:
    # The copied context carries the run the artifact belongs to and the settings (API URL).
    context = contextvars.copy_context()
    run_id = _run_holding_writes() if after_the_run else None
    if run_id is None:
        return _writer.submit(context.run, write, *args)
    written: Future[Any] = Future()

    def send() -> None:
        _writer.submit(context.run, _write_into, written, write, *args)

    with _held_lock:
        _held.setdefault(run_id, []).append(send)
    return written


def _run_holding_writes() -> UUID | None:
    """The calling flow run's id, if its flow sends held writes when it ends."""
    context = FlowRunContext.get()
    if context is None or context.flow is None or context.flow_run is None:
        return None
    hooks = (context.flow.on_completion_hooks, context.flow.on_failure_hooks)
    return context.flow_run.id if all(send_writes_held_for_the_run in h for h in hooks) else None


def _write_into(written: Future[Any], write: Callable[..., Any], *args: Any) -> None:
    try:
        written.set_result(write(*args))
    except BaseException as exc:
        written.set_exception(exc)


def send_writes_held_for_the_run(flow: Any, flow_run: FlowRun, state: Any) -> None:
    """Flow hook (on completion, failure, crash and cancellation): send the run's held writes,
    now that its final state is recorded."""
    with _held_lock:
        sends = _held.pop(flow_run.id, [])
    for send in sends:
        send()


def _client() -> SyncPrefectClient:
    url = get_current_settings().api.url or ""
    client = _clients.get(url)
    if client is None:
        # httpx settings of its own make get_client build a new client, not hand back the
        # caller's (see get_client: a context's client is reused only for the same settings).
        client = get_client(sync_client=True, httpx_settings=busy_retry_settings())
        client.__enter__()
        _clients[url] = client
    return client


def _create(kind: str, key: str, data: Any, description: str) -> UUID:
    """Create an artifact of the run the write was asked from; return its id."""
    task_run_id, flow_run_id = get_task_and_flow_run_ids()
    created = _client().create_artifact(
        ArtifactCreate(
            type=kind,
            key=key,
            data=data,
            description=description,
            task_run_id=task_run_id,
            flow_run_id=flow_run_id,
        )
    )
    return created.id


def _warn_if_failed(written: Future[Any], what: str, job_id: int) -> None:
    # The UI's view of a paid job must not fail the job, nor go missing without a word.
    if (exc := written.exception()) is not None:
        log.warning("%s not written: %s", what, exc, extra={"job_id": job_id})


def write_summary(job_id: int, markdown: str, description: str) -> None:
    """Attach the job's summary (key ``job-<id>``) to the calling task run."""
    written = _in_background(
        _create, "markdown", f"job-{job_id}", markdown, description, after_the_run=True
    )
    written.add_done_callback(lambda done: _warn_if_failed(done, "job summary", job_id))


class GenerationProgress:
    """The job's progress artifact: tokens generated out of its max_tokens.

    Made at its first write, 0.5 s after the first token or at the end: an answer shorter than
    that costs the API one write (a progress artifact made at 0 % and then completed cost two,
    on a server that shares the cores with the job).
    """

    def __init__(self, job_id: int, max_tokens: int) -> None:
        self._job_id = job_id
        self._max_tokens = max_tokens
        self._artifact_id: Future[UUID] | None = None
        # Counted from the first token: a write beside it would share the cores with the
        # tokens right after it.
        self._last_update: float | None = None

    def report(self, tokens: int) -> None:
        now = time.monotonic()
        if self._last_update is None:
            self._last_update = now
        elif now - self._last_update >= UPDATE_EVERY_S:
            self._last_update = now
            self._write(100.0 * tokens / self._max_tokens)

    def complete(self) -> None:
        """Show the answer as finished, also when it stopped before max_tokens."""
        completed = self._write(100.0, after_the_run=True)
        completed.add_done_callback(
            lambda done: _warn_if_failed(done, "progress artifact", self._job_id)
        )

    def _write(self, progress: float, *, after_the_run: bool = False) -> Future[Any]:
        if self._artifact_id is None:
            self._artifact_id = _in_background(
                _create,
                "progress",
                f"job-{self._job_id}-progress",
                progress,
                f"Tokens generated for job {self._job_id}, of at most {self._max_tokens}.",
                after_the_run=after_the_run,
            )
            return self._artifact_id
        return _in_background(self._update, progress, after_the_run=after_the_run)

    def _update(self, progress: float) -> None:
        # Runs on the writer thread after the creation, which it follows in the queue.
        assert self._artifact_id is not None, "an update follows the creation"
        artifact_id = self._artifact_id.result()
        _client().update_artifact(artifact_id, ArtifactUpdate(data=progress))
