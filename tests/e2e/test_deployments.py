"""Jobs reach a real Prefect server and a real process worker the ways operators start them:
`prefect deployment run`, the chain watcher's event and its deployment trigger, the reconcile
flow, and `fabstir-node run`'s in-process runner."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL
from prefect.states import Completed

from deployments.bootstrap import bootstrap
from deployments.runner import EventDispatch, LocalRunner
from fabstir.client import DIRECT_PROMPT_URI
from fabstir.commands.run import build_watcher
from fabstir.domain import JobState
from fabstir.service import ServiceGroup, stop_process
from fabstir.settings import load_settings
from flows.reconcile import reconcile
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import MAX_TOKENS, Node, artifact_written

pytestmark = pytest.mark.e2e

PREFECT = str(Path(sys.executable).with_name("prefect"))
# Above the watcher's gas floor (200k gas at anvil's ~1 gwei), which the fixture's price is not.
WATCHED_PRICE_WEI = 10**14


@pytest.fixture(scope="module")
def bootstrapped(prefect_server: None) -> None:
    bootstrap(load_settings().orchestration)


@pytest.fixture
def worker(bootstrapped: None, node: Node, tmp_path: Path) -> Iterator[None]:
    """One process worker for GPU 0 of the gpu pool (and the cpu pool), polling every second."""
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "FABSTIR_ORCHESTRATION__GPU": "0",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    log = (tmp_path / "worker.log").open("wb")
    processes = [
        subprocess.Popen(
            [PREFECT, "worker", "start", "--type=process", f"--pool={pool}", *queues],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for pool, queues in (("gpu", ["-q", "default", "-q", "gpu-0"]), ("cpu", []))
    ]
    try:
        yield
    finally:
        for process in processes:
            stop_process(process, grace_s=30)
        log.close()


def _wait_for_run(name: str, since: datetime, timeout_s: float = 180) -> FlowRun:
    """Wait for the run ``name`` created after ``since`` to finish (job ids repeat per devnet)."""
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            final = [
                run
                for run in runs
                if run.created is not None
                and run.created >= since
                and run.state is not None
                and run.state.is_final()
            ]
            if final:
                return final[0]
            time.sleep(0.5)
    raise AssertionError(f"no finished run {name} within {timeout_s} s")


def _post_watched(node: Node, prompt: str) -> int:
    from fabstir.storage import put_content

    uri, digest = put_content(node.store, prompt.encode(), "prompts")
    return node.renter.post_job(
        node.model.id,
        digest,
        uri,
        MAX_TOKENS,
        WATCHED_PRICE_WEI,
        MAX_TOKENS * WATCHED_PRICE_WEI,
        node.renter.chain_time() + 3600,
    )


def test_deployment_run_event_trigger_and_reconcile_each_settle_a_job(
    node: Node, worker: None
) -> None:
    since = datetime.now(UTC)
    by_cli, by_event, missed = (
        _post_watched(node, prompt)
        for prompt in ("the cat sat on the mat", "the dog ran far", "the sun and the sea")
    )

    subprocess.run(
        [PREFECT, "deployment", "run", "inference-job/gpu", "--param", f"job_id={by_cli}"],
        env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
        check=True,
        capture_output=True,
    )
    EventDispatch().track(by_event)
    runs = [_wait_for_run(f"job-{job_id}", since) for job_id in (by_cli, by_event)]
    # The renter API's to run when its renter connects: reconcile must not start it.
    node.renter.post_job(
        node.model.id,
        "0x" + "11" * 32,
        DIRECT_PROMPT_URI,
        MAX_TOKENS,
        WATCHED_PRICE_WEI,
        MAX_TOKENS * WATCHED_PRICE_WEI,
        node.renter.chain_time() + 3600,
        host=node.host.address,
    )
    assert reconcile() == [missed], "reconcile starts only the market job that has no run"
    runs.append(_wait_for_run(f"job-{missed}", since))

    for job_id, run in zip((by_cli, by_event, missed), runs, strict=True):
        assert run.state is not None and run.state.is_completed(), run.state
        assert node.renter.get_job(job_id).state is JobState.SETTLED
    assert reconcile() == []
    for job_id in (by_cli, by_event, missed):
        assert artifact_written(f"job-{job_id}", since).type == "markdown"


def test_the_watcher_hands_posted_jobs_to_the_in_process_runner(
    node: Node, bootstrapped: None
) -> None:
    settings = load_settings()
    runner = LocalRunner("inference-job/gpu", max_concurrent=2, heartbeat_s=30)
    group = ServiceGroup({"job-runner": runner, "watcher": build_watcher(settings, runner.track)})
    exit_code: list[int] = []
    since = datetime.now(UTC)
    thread = threading.Thread(target=lambda: exit_code.append(group.run()))
    thread.start()
    try:
        job_id = _post_watched(node, "the cat sat on the mat")
        run = _wait_for_run(f"job-{job_id}", since)
    finally:
        group.request_stop()
        thread.join(timeout=60)

    assert run.state is not None and run.state.is_completed(), run.state
    assert run.deployment_id is not None, "a local run still belongs to the deployment"
    # A worker of the pool finds it if it is scheduled again (a retry from the UI).
    assert run.work_queue_id is not None and run.work_queue_name == "default"
    assert run.tags == ["component:inference"]
    assert node.renter.get_job(job_id).state is JobState.SETTLED
    assert exit_code == [0]


def test_a_job_announced_twice_gets_one_run(node: Node, bootstrapped: None) -> None:
    runner = LocalRunner("inference-job/gpu", max_concurrent=2, heartbeat_s=30)
    runner.start()
    since = datetime.now(UTC)
    job_id = _post_watched(node, "the dog sat on the log")
    serving = threading.Thread(target=runner.run)
    serving.start()
    try:
        runner.track(job_id)
        runner.track(job_id)  # a missed event found again, or a watcher restarted
        run = _wait_for_run(f"job-{job_id}", since)
    finally:
        runner.stop()
        serving.join(timeout=60)

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"job-{job_id}"]))
        )
    assert [r.id for r in runs if r.created is not None and r.created >= since] == [run.id]
    assert run.state is not None and run.state.is_completed(), run.state
    assert node.renter.get_job(job_id).state is JobState.SETTLED


def test_reconcile_does_not_count_a_run_of_an_earlier_chains_job(
    node: Node, bootstrapped: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.inference_job import inference_job

    since = datetime.now(UTC)
    job_id = _post_watched(node, "the owl flew at night")
    # What a devnet started again finds: a finished run named for this job id.
    with get_client(sync_client=True) as client:
        client.create_flow_run(
            inference_job, name=f"job-{job_id}", parameters={"job_id": job_id}, state=Completed()
        )
    assert reconcile() == [], "a run made after this chain's deployment is this job's"

    # The chain as if deployed after that run: its deployment block is a later one.
    node.w3.provider.make_request("evm_increaseTime", [5])
    node.w3.provider.make_request("evm_mine", [])
    redeployed = tmp_path / "devnet.json"
    node.deployment.model_copy(update={"deploy_block": node.host.block_number()}).save(redeployed)
    monkeypatch.setenv("FABSTIR_CHAIN__DEPLOYMENT_FILE", str(redeployed))
    try:
        assert reconcile() == [job_id]
    finally:
        with get_client(sync_client=True) as client:
            for run in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"job-{job_id}"]))
            ):
                if run.created is not None and run.created >= since:
                    client.delete_flow_run(run.id)  # no worker here to run it


@pytest.mark.parametrize("concurrency_limit", [None, 1])
def test_a_local_run_sees_itself_as_the_server_holds_it(
    bootstrapped: None, concurrency_limit: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job thread's client answers some of the engine's calls without the server (the
    update a created run does not need, setting Running a run created Running, the read after
    that): what the run sees of itself from then on must be what the server holds. A
    deployment that limits its concurrency has its runs created Pending, so that the server's
    move to Running takes a slot of the limit."""
    from prefect import flow
    from prefect.context import FlowRunContext

    from tasks._api_client import BusyRetryTransport

    deployment = "inference-job/gpu"
    if concurrency_limit is not None:
        deployment = "inference-job/limited"
        with get_client(sync_client=True) as client:
            gpu = client.read_deployment_by_name("inference-job/gpu")
            client.create_deployment(
                flow_id=gpu.flow_id,
                name="limited",
                concurrency_limit=concurrency_limit,
                work_pool_name=gpu.work_pool_name,
                entrypoint=gpu.entrypoint,
            )
    seen: dict[str, FlowRun] = {}

    @flow(name="inference-job", persist_result=False)
    def looks_at_itself(job_id: int) -> None:
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        seen["engine"] = context.flow_run.model_copy(deep=True)  # the engine sets its end state
        with get_client(sync_client=True) as client:
            seen["server"] = client.read_flow_run(context.flow_run.id)

    sent: list[str] = []
    handle_request = BusyRetryTransport.handle_request

    def recording(transport: BusyRetryTransport, request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path.rsplit('/api', 1)[-1]}")
        return handle_request(transport, request)

    monkeypatch.setattr(BusyRetryTransport, "handle_request", recording)
    runner = LocalRunner(deployment, max_concurrent=1, heartbeat_s=30)
    runner.start()
    runner._flow = looks_at_itself
    for job_id in (7, 8):  # the second on the same job thread, with the same client
        sent.clear()
        state = runner._executor.submit(runner._execute, {"job_id": job_id}).result()

        assert state.is_completed(), state
        run_id = seen["engine"].id
        set_running = [] if concurrency_limit is None else [f"POST /flow_runs/{run_id}/set_state"]
        assert [call for call in sent if "/flow_runs/" in call] == [
            "POST /flow_runs/",  # created Running, or else Pending
            *set_running,
            f"GET /flow_runs/{run_id}",  # the flow's own read above
            f"POST /flow_runs/{run_id}/set_state",  # Completed
        ]
        computed_at_read = {"updated", "estimated_run_time", "estimated_start_time_delta"}
        engine = seen["engine"].model_dump(exclude=computed_at_read)
        server = seen["server"].model_dump(exclude=computed_at_read)
        assert engine == server
        assert server["run_count"] == 1 and server["start_time"] is not None
        assert server["flow_version"] == looks_at_itself.version
        assert server["deployment_id"] is not None and server["name"] == f"job-{job_id}"
    runner.stop()


def test_the_gpu_slot_holds_up_only_the_infer_step(
    node: Node, bootstrapped: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another job generates on GPU 0 (this test, holding the GPU's only slot), a job
    pinned to that GPU still claims, fetches its model and looks in the cache; only its infer
    step waits, and the job settles once the slot is free. The slot is not left taken."""
    from prefect.concurrency.sync import concurrency

    from blocks import current_settings
    from flows.inference_job import inference_job

    monkeypatch.setenv("FABSTIR_ORCHESTRATION__GPU", "0")
    orchestration = current_settings().orchestration
    assert orchestration.infer_slots_per_gpu == 1
    limit = orchestration.gpu_limit_name(0)
    job_id = node.post("the cat sat on the mat")
    receipts: list[object] = []
    with concurrency(limit, occupy=1, strict=True):
        run = threading.Thread(target=lambda: receipts.append(inference_job(job_id)))
        run.start()
        deadline = time.monotonic() + 60
        while node.renter.get_job(job_id).state != JobState.CLAIMED:
            assert time.monotonic() < deadline, "the job was not claimed while the GPU was busy"
            time.sleep(0.1)
        time.sleep(2)  # long enough to generate, store, prove and settle this tiny answer
        assert node.renter.get_job(job_id).state == JobState.CLAIMED and not receipts
    run.join(timeout=120)
    assert receipts and node.renter.get_job(job_id).state == JobState.SETTLED
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit).active_slots == 0


def test_the_cache_is_filled_after_the_gpu_slot_is_released(
    node: Node, bootstrapped: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storing an answer took ~0.4 s at 1M cache entries: the next job's generation may start
    meanwhile, so the slot is free while this job's answer is stored."""
    from blocks import current_settings
    from fabstir.cache import SemanticCache
    from flows.inference_job import inference_job

    monkeypatch.setenv("FABSTIR_ORCHESTRATION__GPU", "0")
    limit = current_settings().orchestration.gpu_limit_name(0)
    slots_taken_at_store: list[int] = []
    store = SemanticCache.store

    def recording_store(cache: SemanticCache, *args: object, **kwargs: object) -> None:
        with get_client(sync_client=True) as client:
            taken = client.read_global_concurrency_limit_by_name(limit).active_slots
        slots_taken_at_store.append(taken)
        store(cache, *args, **kwargs)

    monkeypatch.setattr(SemanticCache, "store", recording_store)
    job_id = node.post("why do cats purr when they are content")
    inference_job(job_id)
    assert node.renter.get_job(job_id).state == JobState.SETTLED
    assert slots_taken_at_store == [0]


def test_an_answer_made_before_the_infer_step_fails_is_still_cached(
    node: Node, bootstrapped: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when a later turn of a streamed session fails: the answers made before it stand."""
    from fabstir import pipeline
    from fabstir.cache import SemanticCache
    from flows.inference_job import inference_job

    infer = pipeline.infer

    def failing_after_the_answer(*args: object, **kwargs: object) -> object:
        infer(*args, **kwargs)  # answers, and leaves its cache write to the step
        raise RuntimeError("a later turn failed")  # a fake: a failure after an answer

    stored: list[str] = []
    store = SemanticCache.store

    def recording_store(cache: SemanticCache, *args: Any, **kwargs: Any) -> None:
        stored.append(args[1])
        store(cache, *args, **kwargs)

    monkeypatch.setattr(pipeline, "infer", failing_after_the_answer)
    monkeypatch.setattr(SemanticCache, "store", recording_store)
    prompt = "what makes the sea salty"
    job_id = node.post(prompt)
    with pytest.raises(RuntimeError, match="a later turn failed"):
        inference_job(job_id)
    assert stored == [prompt]
