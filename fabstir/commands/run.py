"""`fabstir-node run` (everything one host needs, until Ctrl-C) and `fabstir-node bootstrap`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fabstir.commands.api import build_api, model_update_services
from fabstir.errors import ConfigError
from fabstir.service import ProcessService, Service, ServiceGroup
from fabstir.settings import Settings

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="Run this host until Ctrl-C: Prefect server (unless PREFECT_API_URL is set), "
        "bootstrap, one Prefect worker per GPU and per other pool, the job runner, the renter "
        "API, the model update poll and the chain watcher.",
    )
    run.set_defaults(handler=run_node)
    bootstrap = commands.add_parser(
        "bootstrap",
        help="Create or update the Prefect work pools, queues, GPU limits, deployments and "
        "automations (needs PREFECT_API_URL).",
    )
    bootstrap.set_defaults(handler=run_bootstrap)


def run_bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "set PREFECT_API_URL to the Prefect server to bootstrap (fabstir-node run starts "
            "one and bootstraps it)",
            code="prefect_api_missing",
        )
    from deployments.bootstrap import bootstrap

    bootstrap(settings.orchestration)
    return 0


class _Once:
    """A step run when the group starts (after the services before it), then idle."""

    def __init__(self, step: Callable[[], None]) -> None:
        self._step = step
        self._stopped = threading.Event()

    def start(self) -> None:
        self._step()

    def run(self) -> None:
        self._stopped.wait()

    def stop(self) -> None:
        self._stopped.set()


# The server writes each step's state changes to SQLite as they arrive: one transaction per task
# run event by default, ~27 a job, each contending for the database with the run's own API calls
# and for the CPU with the job. In batches (at most 1 s late in the UI; automations act on the
# events as they arrive, not on these rows) a job costs one or two writes.
SERVER_BATCHING = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
}


def prefect_environment(settings: Settings) -> dict[str, str]:
    """Prefect settings every process of this node gets (the operator's own values win)."""
    orchestration = settings.orchestration
    return {
        "PREFECT_HOME": str(settings.home / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{orchestration.server_port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "fabstir,web3,llama_cpp",
        "PREFECT_WORKER_QUERY_SECONDS": str(orchestration.poll_s),
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(orchestration.heartbeat_s),
        **SERVER_BATCHING,
        **{k: v for k, v in os.environ.items() if k.startswith("PREFECT_")},
    }


def build_services(settings: Settings) -> dict[str, Service]:
    """Everything `run` runs, in start order."""
    orchestration = settings.orchestration
    own_server = not os.environ.get("PREFECT_API_URL")
    os.environ.update(prefect_environment(settings))  # before Prefect is imported below
    logs = settings.home / "logs"
    prefect = str(Path(sys.executable).with_name("prefect"))
    services: dict[str, Service] = {}
    port = str(orchestration.server_port)
    if own_server:
        services["prefect-server"] = ProcessService(
            [prefect, "server", "start", "--no-ui", "--host", "127.0.0.1", "--port", port],
            log_path=logs / "prefect-server.log",
            ready_url=f"http://127.0.0.1:{port}/api/health",
            niceness=orchestration.server_niceness,
        )

    from deployments.bootstrap import bootstrap, pools_of
    from deployments.runner import EventDispatch, LocalRunner

    services["bootstrap"] = _Once(lambda: bootstrap(orchestration))
    pool = orchestration.work_pool
    for gpu in orchestration.gpus:
        services[f"worker-gpu-{gpu}"] = ProcessService(
            _worker_argv(
                pool,
                f"{orchestration.host_name}-gpu-{gpu}",
                *("--work-queue", "default", "--work-queue", f"gpu-{gpu}"),
                *("--limit", str(orchestration.jobs_per_worker)),
            ),
            env={"CUDA_VISIBLE_DEVICES": str(gpu), "FABSTIR_ORCHESTRATION__GPU": str(gpu)},
            log_path=logs / f"worker-gpu-{gpu}.log",
        )
    for other in pools_of(PROJECT_ROOT / "prefect.yaml", pool):
        if other != pool:
            services[f"worker-{other}"] = ProcessService(
                _worker_argv(other, f"{orchestration.host_name}-{other}"),
                log_path=logs / f"worker-{other}.log",
            )
    # Direct jobs run in this process whatever the dispatch: their streams are here.
    runner = LocalRunner(
        f"inference-job/{pool}",
        max_concurrent=orchestration.jobs_per_worker,
        heartbeat_s=orchestration.heartbeat_s,
    )
    services["job-runner"] = runner
    services["api"] = build_api(settings, runner.run_now)
    services.update(model_update_services(settings))
    dispatch = runner if orchestration.dispatch == "local" else EventDispatch()
    services["watcher"] = build_watcher(settings, dispatch.track)
    return services


def _worker_argv(pool: str, name: str, *options: str) -> list[str]:
    start = [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--type=process"]
    return [*start, f"--pool={pool}", f"--name={name}", *options]


def build_watcher(settings: Settings, track: Callable[[int], None]) -> Service:
    """The chain watcher, handing each eligible posted job's id to ``track``; it leaves the
    direct jobs of this host to the renter API, so no job runs twice."""
    from dataclasses import replace

    from blocks import ChainBlock
    from fabstir.chain import JobEvent, JobEventKind, JobWatcher
    from fabstir.client import DIRECT_PROMPT_URI
    from fabstir.reconcile import host_eligibility

    chain = ChainBlock.from_settings(settings).get_client()

    def on_event(event: JobEvent) -> None:
        if event.kind is JobEventKind.POSTED:
            track(event.job_id)

    assert settings.chain.watch_cursor_file is not None  # filled from home by Settings
    return JobWatcher(
        chain,
        settings.chain.watch_cursor_file,
        on_event,
        eligibility=replace(
            host_eligibility(chain, settings.host), direct_prompt_uri=DIRECT_PROMPT_URI
        ),
        confirmations=settings.chain.confirmations,
        poll_s=settings.chain.watch_poll_s,
    )


def run_node(settings: Settings, args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; exit 1 if any part of the node stops on its own."""
    group = ServiceGroup(build_services(settings))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: group.request_stop())
    return group.run()
