"""`fabstir-node serve`: the renter API, running each paid request's job flow in this process."""

from __future__ import annotations

import argparse
import signal
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabstir.service import Service, ServiceGroup
from fabstir.settings import Settings

if TYPE_CHECKING:
    from fabstir.api import ApiServer, WaitingJobRunner


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="Serve the OpenAI-compatible renter API on FABSTIR_API__HOST:FABSTIR_API__PORT; "
        "each paid request runs its job's inference-job flow here, streaming its tokens.",
    )
    serve.set_defaults(handler=run_serve)


def build_api(settings: Settings, run_job: WaitingJobRunner | None = None) -> ApiServer:
    """Build the API server over the node's block clients, with the served models loaded.

    ``run_job`` starts a job's flow in this process, at a request or (with a wait in seconds)
    at its renter's handshake (`fabstir-node run` passes its runner's); without it the server
    runs the flows itself, ``jobs_per_worker`` at a time.
    """
    from blocks import ChainBlock, EngineBlock, StorageBlock, job_streams
    from blocks._clients import client_once
    from fabstir.api import ApiServer, ApiServices, create_app
    from fabstir.cache import Embedder
    from fabstir.monitoring import CapacityGuard

    engine = EngineBlock.from_settings(settings)
    catalog, engines = engine.get_catalog(), engine.get_client()
    for name in catalog.names:
        engines.engine_for(catalog.pull(name))
    embedding_path = settings.cache.embedding_model_path
    executor = None
    if run_job is None:
        from flows.inference_job import inference_job

        executor = ThreadPoolExecutor(
            settings.orchestration.jobs_per_worker, thread_name_prefix="api-job"
        )
        run_job = partial(executor.submit, inference_job)
    assert settings.prover.work_dir is not None  # filled from home by Settings
    services = ApiServices(
        chain=ChainBlock.from_settings(settings).get_client(),
        catalog=catalog,
        engines=engines,
        store=StorageBlock.from_settings(settings).get_client(),
        streams=job_streams(),
        run_job=run_job,
        start_waiting_job=run_job,
        proofs_dir=settings.prover.work_dir,
        host_private_key=settings.chain.host_private_key.get_secret_value(),
        price_per_token_wei=settings.host.price_per_token_wei,
        access_journal=settings.home / "api" / "access.jsonl",
        capacity=CapacityGuard(settings.monitoring, Path(str(settings.models.dir))),
        # The cache's own embedder (same client key), loaded once per process.
        embedder=client_once("embedder", str(embedding_path), lambda: Embedder(embedding_path))
        if embedding_path is not None and embedding_path.exists()
        else None,
    )
    app = create_app(settings.api, services)
    return ApiServer(app, settings.api.host, settings.api.port, jobs=executor)


def model_update_services(settings: Settings) -> dict[str, Service]:
    """The model update poll, when FABSTIR_MODELS__UPDATE_POLL_S is not 0: new versions of the
    served models are pulled and verified in the background, and new jobs switch to them."""
    if not settings.models.update_poll_s:
        return {}
    from blocks import EngineBlock
    from fabstir.models import UpdatePoller

    # The catalog the API and this process's jobs resolve through (one per process).
    catalog = EngineBlock.from_settings(settings).get_catalog()
    return {"model-updates": UpdatePoller(catalog, settings.models.update_poll_s)}


def serve_services(settings: Settings) -> dict[str, Service]:
    """What `fabstir-node serve` runs: the API and, unless turned off, the model update poll."""
    return {"api": build_api(settings), **model_update_services(settings)}


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; exit 1 if the server stops on its own."""
    group = ServiceGroup(serve_services(settings))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: group.request_stop())
    return group.run()
