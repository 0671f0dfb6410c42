"""How `fabstir-node run` hands posted jobs to Prefect: run them here, or emit an event.

:class:`LocalRunner` is the low-latency path for one host: each job becomes a run of the
inference-job deployment (so the UI, automations and the crash re-run treat it like any
other), executed in a thread of this process instead of a subprocess a worker spawns (5-18 s).
Its flow runs send no heartbeat thread of their own (that thread costs ~1 s per run to join);
one thread here sends the same ``prefect.flow-run.heartbeat`` events for every run in progress,
so the zombie automation still marks the runs of a dead process Crashed. The renter API's direct
jobs run here too (:meth:`LocalRunner.run_now`), in the process that holds their streams.

:class:`EventDispatch` emits ``fabstir.job.posted``; the deployment trigger in ``prefect.yaml``
turns it into a run that any worker of the pool picks up (hosts with several workers).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from uuid import UUID

import httpx
from prefect import __version__ as prefect_version
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import FlowRunCreate
from prefect.client.schemas.objects import (
    FlowRun,
    FlowRunPolicy,
    KeyValueLabelsField,
    StateType,
)
from prefect.client.schemas.responses import (
    OrchestrationResult,
    SetStateStatus,
    StateAcceptDetails,
)
from prefect.context import SettingsContext, SyncClientContext, get_settings_context
from prefect.events import emit_event
from prefect.flow_engine import run_flow_sync
from prefect.settings import (
    PREFECT_API_AUTH_STRING,
    PREFECT_API_KEY,
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    Settings,
    get_current_settings,
)
from prefect.states import Pending, Running, State, to_state_create

from fabstir.domain import Receipt
from tasks._api_client import busy_retry_settings
from tasks._events import job_resource

log = logging.getLogger(__name__)

JOB_POSTED = "fabstir.job.posted"


class EventDispatch:
    """Announce each job as a Prefect event for the deployment trigger."""

    def track(self, job_id: int) -> None:
        emit_event(JOB_POSTED, resource=job_resource(job_id), payload={"job_id": job_id})
        log.info("job announced", extra={"job_id": job_id})


class _JobThreadClient(SyncPrefectClient):
    """A job thread's Prefect client. It spares the flow engine up to three of the five API
    calls it makes for a run it is given (~10-20 ms each, measured A/B in
    `benchmarks.orchestration`):

    - the update of the run's flow version and retry policy, when the run was created with
      them (:meth:`create_run`), which would change nothing;
    - setting the run Running, when it was created Running: the server has already recorded
      that state, so the engine is answered with it;
    - the read of the run just after it was set Running, answered from the run as created and
      what the server changes on that transition (its state, run count and start time).

    Any other call, or a call about another run, goes to the server.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The run this client last created, as the server holds it, while that is known here.
        self._known: FlowRun | None = None

    def create_run(self, created: FlowRunCreate) -> FlowRun:
        response = self.request(
            "POST", "/flow_runs/", json=created.model_dump(mode="json", exclude_unset=True)
        )
        self._known = FlowRun.model_validate(response.json())
        return self._known.model_copy(deep=True)

    def update_flow_run(
        self,
        flow_run_id: UUID,
        flow_version: str | None = None,
        parameters: dict[str, Any] | None = None,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        empirical_policy: FlowRunPolicy | None = None,
        infrastructure_pid: str | None = None,
        job_variables: dict[str, Any] | None = None,
    ) -> httpx.Response:
        known = self._known
        if (
            known is not None
            and known.id == flow_run_id
            and flow_version in (None, known.flow_version)
            and empirical_policy in (None, known.empirical_policy)
            and parameters is name is tags is job_variables is None
            and not infrastructure_pid
        ):
            return httpx.Response(httpx.codes.NO_CONTENT)  # the server's answer to an update
        self._known = None
        return super().update_flow_run(
            flow_run_id,
            flow_version=flow_version,
            parameters=parameters,
            name=name,
            tags=tags,
            empirical_policy=empirical_policy,
            infrastructure_pid=infrastructure_pid,
            job_variables=job_variables,
        )

    def update_flow_run_labels(self, flow_run_id: UUID, labels: KeyValueLabelsField) -> None:
        self._known = None
        super().update_flow_run_labels(flow_run_id, labels)

    def set_flow_run_state(
        self, flow_run_id: UUID | str, state: State[Any], force: bool = False
    ) -> OrchestrationResult[Any]:
        known = self._known
        if known is None or str(known.id) != str(flow_run_id) or known.state is None:
            self._known = None
            return super().set_flow_run_state(flow_run_id, state, force=force)
        if known.state.is_running() and state.is_running() and not force:
            # The run was created Running and has not changed since: the engine is answered
            # with the Running state the server recorded then.
            return OrchestrationResult(
                state=known.state.model_copy(deep=True),
                status=SetStateStatus.ACCEPT,
                details=StateAcceptDetails(),
            )
        result = super().set_flow_run_state(flow_run_id, state, force=force)
        self._known = None
        accepted = result.state
        if (
            known.state.is_pending()
            and result.status == SetStateStatus.ACCEPT
            and accepted is not None
            and accepted.is_running()
        ):
            # What the server's transforms change on entering Running: SetRunStateType,
            # SetRunStateName, SetStartTime and IncrementFlowRunCount, in
            # prefect/server/orchestration/global_policy.py.
            self._known = known.model_copy(
                update={
                    "state": accepted,
                    "state_id": accepted.id,
                    "state_type": accepted.type,
                    "state_name": accepted.name,
                    "run_count": known.run_count + 1,
                    "start_time": known.start_time or accepted.timestamp,
                }
            )
        return result

    def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        known = self._known
        if known is not None and known.id == flow_run_id and known.state_type == StateType.RUNNING:
            self._known = None  # answered once; the run changes from here on
            return known.model_copy(deep=True)
        return super().read_flow_run(flow_run_id)


class LocalRunner:
    """Run jobs as deployment runs in this process, ``max_concurrent`` at a time."""

    def __init__(self, deployment_name: str, *, max_concurrent: int, heartbeat_s: int) -> None:
        self._deployment_name = deployment_name
        self._heartbeat_s = heartbeat_s
        self._jobs: queue.Queue[int] = queue.Queue()
        self._executor = ThreadPoolExecutor(max_concurrent, thread_name_prefix="job")
        self._stopping = threading.Event()
        self._running: dict[UUID, FlowRun] = {}
        self._jobs_in_hand: set[int] = set()
        self._lock = threading.Lock()
        self._deployment: dict[str, Any] | None = None
        self._flow: Any = None
        self._run_name = ""
        self._limited = True
        self._run_settings: Settings | None = None
        self._local = threading.local()
        self._fault: BaseException | None = None

    def start(self) -> None:
        """Look up the deployment (`fabstir-node bootstrap` creates it) and load the flow."""
        from flows.inference_job import inference_job

        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(self._deployment_name)
        # What a run created from the deployment carries, but its version (see _execute).
        self._deployment = {
            "flow_id": deployment.flow_id,
            "deployment_id": deployment.id,
            "work_pool_name": deployment.work_pool_name,
            "work_queue_name": deployment.work_queue_name,
            "tags": deployment.tags,
            "labels": deployment.labels,
        }
        # A run is created Running, which spares setting it so (~15 ms a job), unless the
        # deployment limits its concurrency: only a run's move from Pending to Running takes a
        # slot of that limit on the server.
        self._limited = deployment.global_concurrency_limit is not None
        # Each run is created with its name (the flow's own template), so the engine does not
        # rename it, and the flow is told where results would go (it persists none), so the
        # engine does not ask the server three times a run: ~20-40 ms a job on SQLite.
        assert isinstance(inference_job.flow_run_name, str), "a template, formatted below"
        self._run_name = inference_job.flow_run_name
        self._flow = inference_job.with_options(
            result_storage=get_current_settings().results.local_storage_path
        )
        self._flow.flow_run_name = None
        # Built once: copying Prefect's settings costs ~20 ms, which every job would pay.
        self._run_settings = get_current_settings().copy_with_update(
            updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        )
        threading.Thread(target=self._send_heartbeats, name="heartbeats", daemon=True).start()

    def track(self, job_id: int) -> None:
        """Queue a job, unless it is queued or running here already; called from the watcher's
        thread, so it never blocks.

        A job announced again after its run has ended gets another run, which finds the job's
        state on chain (settled, or claimed by us and left half done by a crash) and acts on
        it. A Prefect idempotency key would outlive a devnet whose job ids start again.
        """
        with self._lock:
            if job_id in self._jobs_in_hand:
                log.info("job already in hand", extra={"job_id": job_id})
                return
            self._jobs_in_hand.add(job_id)
        self._jobs.put(job_id)

    def run_now(self, job_id: int, await_request_s: float = 0.0) -> Future[Receipt | None]:
        """Start a run of a job a renter asked the API for (the API holds its stream), or, with
        ``await_request_s``, one that waits that long for its renter's request; the future has
        the run's receipt (None for a run whose renter did not ask), or raises the flow's error.

        Each request gets a run of its own: the API lets one request at a time stream a job, and
        a job refused or cancelled once may be asked for again.
        """
        return self._executor.submit(self._run_direct, job_id, await_request_s)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            self._executor.submit(self._run_job, job_id).add_done_callback(self._check)
        if self._fault is not None:
            raise self._fault

    def _check(self, future: Future[None]) -> None:
        # A job's failure is recorded in its run's state; an exception here means runs cannot
        # be created or executed at all, so the node must stop rather than drop jobs.
        fault = future.exception()
        if fault is not None and self._fault is None:
            self._fault = fault
            self._stopping.set()

    def stop(self) -> None:
        """Stop taking jobs and wait for the runs in progress to finish."""
        self._stopping.set()
        self._executor.shutdown(wait=True)

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def _run_job(self, job_id: int) -> None:
        try:
            self._execute({"job_id": job_id})
        finally:
            with self._lock:
                self._jobs_in_hand.discard(job_id)

    def _run_direct(self, job_id: int, await_request_s: float) -> Receipt | None:
        parameters: dict[str, Any] = {"job_id": job_id}
        if await_request_s:
            parameters["await_request_s"] = await_request_s
        return self._execute(parameters).result()

    def _execute(self, parameters: dict[str, Any]) -> State:
        """Create and execute a run of the job ``parameters`` name; return its final state."""
        assert self._deployment is not None and self._run_settings, "call start() first"
        job_id = parameters["job_id"]
        run_settings = SettingsContext(
            profile=get_settings_context().profile, settings=self._run_settings
        )
        with run_settings:
            # The run of the deployment, created as a flow run naming it: ~17 ms against ~27 ms
            # for create_flow_run_from_deployment on SQLite, which reads the deployment again
            # and checks the parameters against its schema (the flow checks them when it
            # starts). The server fills in the same work queue; only the deployment's version
            # is not recorded on the run.
            created = FlowRunCreate(
                **self._deployment,
                name=self._run_name.format(job_id=job_id),
                parameters=parameters,
                state=to_state_create(Pending() if self._limited else Running()),
                # What the engine would otherwise update the run with once it starts.
                flow_version=self._flow.version,
                empirical_policy=FlowRunPolicy(
                    retries=self._flow.retries, retry_delay=self._flow.retry_delay_seconds
                ),
            )
            flow_run = self._thread_client().create_run(created)
            return self._execute_run(job_id, flow_run, parameters)

    def _thread_client(self) -> _JobThreadClient:
        """This thread's Prefect API client, which the flow engine picks up too; kept for the
        thread's life, since a new one costs ~35 ms (an SSL context, and a CSRF-token request
        before its first call). It retries a busy server within milliseconds: a job posted
        while the server records the previous one would otherwise wait 2 s to be created."""
        clients: SyncClientContext | None = getattr(self._local, "clients", None)
        if clients is None:
            api_url = PREFECT_API_URL.value()
            if not api_url:
                raise RuntimeError("PREFECT_API_URL is not set: the runner needs a Prefect server")
            # The arguments get_client(sync_client=True) would pass.
            client = _JobThreadClient(
                api_url,
                auth_string=PREFECT_API_AUTH_STRING.value(),
                api_key=PREFECT_API_KEY.value(),
                httpx_settings=busy_retry_settings(),
            )
            # Prefect hands a context's client only to callers asking with the same httpx
            # settings. The engine asks with none (resolving result storage, once a run), so
            # the context records none: it would build a client of its own (~20 ms) otherwise.
            clients = self._local.clients = SyncClientContext.model_construct(client=client)
            clients.__enter__()  # left entered: the context is this thread's from now on
        assert isinstance(clients.client, _JobThreadClient)
        return clients.client

    def _execute_run(self, job_id: int, flow_run: FlowRun, parameters: dict[str, Any]) -> State:
        with self._lock:
            self._running[flow_run.id] = flow_run
        self._heartbeat(flow_run)
        # Prefect 3.9 watches every deployment run for an outside "suspend" over an events
        # websocket of its own, opened before the flow starts and joined after it ends (~150 ms
        # a job here). A job is never suspended half way (the renter's stream and the claim
        # would be stranded), so the engine is shown the run without its deployment; the
        # server's record, its state events and our heartbeats still name the deployment.
        unwatched = flow_run.model_copy(update={"deployment_id": None})
        try:
            state = run_flow_sync(
                self._flow, flow_run=unwatched, parameters=parameters, return_type="state"
            )
            log.info("job run ended", extra={"job_id": job_id, "state": state.type.value})
            return state
        finally:
            with self._lock:
                del self._running[flow_run.id]

    def _send_heartbeats(self) -> None:
        while not self._stopping.wait(self._heartbeat_s):
            with self._lock:
                runs = list(self._running.values())
            for flow_run in runs:
                self._heartbeat(flow_run)

    def _heartbeat(self, flow_run: FlowRun) -> None:
        # The same event the flow engine's own heartbeat thread sends.
        emit_event(
            "prefect.flow-run.heartbeat",
            resource={
                "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.name": flow_run.name or "",
                "prefect.version": prefect_version,
            },
            related=[
                {
                    "prefect.resource.id": f"prefect.flow.{flow_run.flow_id}",
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": self._flow.name,
                },
                {
                    "prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                    "prefect.resource.role": "deployment",
                },
            ],
        )
