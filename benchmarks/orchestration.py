"""What Prefect adds per job in the long-running `fabstir-node run` path, and how fast a posted
job is picked up, on a fresh devnet and a standalone Prefect server (SQLite).

    python -m benchmarks.orchestration [--jobs N] [--json]

For the same prompts, the core calls made directly (baseline: the seven steps, then the job's
quality row, which the flow also writes) and the same job run as a deployment run in this
process, the way `fabstir-node run` runs it (candidate: run created from the deployment, eight
tasks, runner heartbeats, progress and summary artifacts, on the runner's job thread, against a
server started with the node's settings). Each pair is followed by a SETTLE_S pause, so what a
run leaves to land after it (artifact writes, the server's handling of its events) is not timed
as part of the next direct job. ``pickup_s``: from the renter's postJob transaction
being mined to the host's claim being on chain, with the watcher polling at its default
interval (FABSTIR_CHAIN__WATCH_POLL_S). All figures are medians. With --json the last line is
one JSON object with keys direct_ms, flow_ms, overhead_ms, pickup_s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROMPTS = ("Write a haiku about the sea.", "Name three rivers.", "What is two plus two?")
MAX_TOKENS = 32
PRICE_WEI = 10**14  # above the watcher's gas floor
SETTLE_S = 0.5


def _direct(job_id: int) -> float:
    from blocks import (
        CacheBlock,
        ChainBlock,
        EngineBlock,
        ProverBlock,
        StorageBlock,
        current_settings,
    )
    from fabstir import pipeline
    from fabstir.monitoring import QualityLog, job_quality, token_symbols

    settings = current_settings()
    chain = ChainBlock.from_settings(settings).get_client()
    engine = EngineBlock.from_settings(settings)
    store = StorageBlock.from_settings(settings).get_client()
    cache = CacheBlock.from_settings(settings).get_client()
    prover = ProverBlock.from_settings(settings)
    start = time.perf_counter()
    claimed = pipeline.claim_job(
        chain, engine.get_catalog(), store, job_id, engine.price_per_token_wei
    )
    model = pipeline.fetch_model(engine.get_catalog(), claimed)
    cached = pipeline.look_up_cache(cache, store, model, claimed)
    result = pipeline.infer(engine.get_client(), cache, model, claimed, cached)
    stored = pipeline.store_result(store, claimed, model, result)
    proof = pipeline.prove_billing(
        prover.get_client(), Path(prover.work_dir), claimed, stored, result
    )
    receipt = pipeline.settle_job(chain, claimed, stored, result, proof)
    row = job_quality(claimed, result, receipt, token_symbols(chain), finished_at=time.time())
    QualityLog(store).record(row)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5, help="Jobs per mode (default 5).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    workdir = Path(tempfile.mkdtemp(prefix="fabstir-bench-"))
    from benchmarks._prefect import start_prefect_server
    from fabstir.chain import ChainClient, Devnet, Offer
    from fabstir.settings import ANVIL_KEYS, load_settings
    from fabstir.storage import ObjectStore, put_content

    server = start_prefect_server(workdir, port=4517)
    settings = load_settings()
    try:
        from deployments.bootstrap import bootstrap
        from deployments.runner import LocalRunner
        from fabstir.commands.run import build_watcher

        bootstrap(settings.orchestration)
        with Devnet(
            deployment_file=settings.chain.deployment_file, models=settings.host.models
        ) as deployment:
            host = ChainClient(deployment, ANVIL_KEYS[1])
            renter = ChainClient(deployment, ANVIL_KEYS[2])
            price = settings.host.price_per_token_wei
            host.register(
                [Offer(spec.id, price) for spec in settings.host.models],
                api_url=settings.host.public_url,
            )
            store = ObjectStore(str(settings.storage.url))

            def post(prompt: str) -> int:
                uri, digest = put_content(store, prompt.encode(), "prompts")
                return renter.post_job(
                    settings.host.models[0].id,
                    digest,
                    uri,
                    MAX_TOKENS,
                    PRICE_WEI,
                    MAX_TOKENS * PRICE_WEI,
                    renter.chain_time() + 3600,
                )

            runner = LocalRunner("inference-job/gpu", max_concurrent=1, heartbeat_s=30)
            runner.start()

            def via_flow(job_id: int) -> float:
                start = time.perf_counter()
                # What the runner does for each job the watcher hands it, on its job thread.
                runner._executor.submit(runner._run_job, job_id).result()
                return (time.perf_counter() - start) * 1000

            direct_ms: list[float] = []
            flow_ms: list[float] = []
            prompts = [PROMPTS[i % len(PROMPTS)] + f" ({i})" for i in range(args.jobs + 1)]
            for i, prompt in enumerate(prompts):
                # Separate caches, so both modes miss and do the same work.
                os.environ["FABSTIR_CACHE__URI"] = str(workdir / f"cache-direct-{i}")
                direct = _direct(post(prompt))
                os.environ["FABSTIR_CACHE__URI"] = str(workdir / f"cache-flow-{i}")
                flow = via_flow(post(prompt))
                # What a run leaves behind (its artifact writes, the server's handling of its
                # events) lands now, not in the next direct job's time.
                time.sleep(SETTLE_S)
                if i > 0:  # the first pair loads models, keys and Prefect
                    direct_ms.append(direct)
                    flow_ms.append(flow)
            runner.stop()

            pickups = _pickups(settings, host, post, args.jobs, workdir, build_watcher)
    finally:
        server.stop()
    added = [f - d for f, d in zip(flow_ms, direct_ms, strict=True)]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"python {platform.python_version()}, prefect server on SQLite",
        "jobs": args.jobs,
        "direct_ms": round(statistics.median(direct_ms), 1),
        "flow_ms": round(statistics.median(flow_ms), 1),
        "overhead_ms": round(statistics.median(added), 1),
        "pickup_s": round(statistics.median(pickups), 3),
        "direct_ms_all": [round(v, 1) for v in direct_ms],
        "flow_ms_all": [round(v, 1) for v in flow_ms],
        "pickup_s_all": [round(v, 3) for v in pickups],
    }
    if not args.json:
        print(f"{'job':>4} {'direct ms':>10} {'flow ms':>10} {'added ms':>9}")
        for i, (d, f) in enumerate(zip(direct_ms, flow_ms, strict=True), 1):
            print(f"{i:>4} {d:>10.1f} {f:>10.1f} {f - d:>9.1f}")
        print(
            f"medians: direct {report['direct_ms']} ms, flow {report['flow_ms']} ms, "
            f"added {report['overhead_ms']} ms; pickup {report['pickup_s']} s"
        )
    print(json.dumps(report))


def _pickups(
    settings: Any, host: Any, post: Any, jobs: int, workdir: Path, build_watcher: Any
) -> list[float]:
    """Seconds from postJob mined to the job CLAIMED on chain, through watcher and runner."""
    from deployments.runner import LocalRunner
    from fabstir.domain import JobState
    from fabstir.service import ServiceGroup

    os.environ["FABSTIR_CACHE__URI"] = str(workdir / "cache-pickup")
    runner = LocalRunner("inference-job/gpu", max_concurrent=2, heartbeat_s=30)
    group = ServiceGroup({"job-runner": runner, "watcher": build_watcher(settings, runner.track)})
    thread = threading.Thread(target=group.run, daemon=True)
    thread.start()
    pickups = []
    try:
        time.sleep(1)
        for i in range(jobs):
            job_id = post(f"Count to {i + 3}.")
            posted = time.perf_counter()
            while host.get_job(job_id).state is JobState.POSTED:
                time.sleep(0.02)
            pickups.append(time.perf_counter() - posted)
            while runner.running:
                time.sleep(0.1)
    finally:
        group.request_stop()
        thread.join(timeout=120)
    return pickups


if __name__ == "__main__":
    main()
