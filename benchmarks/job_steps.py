"""Time each step of one demo job run through the Prefect flow, next to the same core calls made
directly, on the same prompt and a fresh devnet.

    python -m benchmarks.job_steps [--json]

Prints per-step milliseconds for both, the flow's wall time, and the orchestration overhead
(flow wall time minus the direct calls' time), plus the flow's time without infer and prove.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPT = "Write a haiku about the sea."
MAX_TOKENS = 48
STEPS = ("claim", "fetch-model", "cache-lookup", "infer", "store-result", "prove", "settle")


def _run_direct(job_id: int) -> dict[str, float]:
    from blocks import (
        CacheBlock,
        ChainBlock,
        EngineBlock,
        ProverBlock,
        StorageBlock,
        current_settings,
    )
    from fabstir import pipeline

    settings = current_settings()
    chain = ChainBlock.from_settings(settings).get_client()
    engine = EngineBlock.from_settings(settings)
    store = StorageBlock.from_settings(settings).get_client()
    cache = CacheBlock.from_settings(settings).get_client()
    prover = ProverBlock.from_settings(settings)
    timings: dict[str, float] = {}

    def timed(step: str, call: Any, *args: Any) -> Any:
        start = time.perf_counter()
        value = call(*args)
        timings[step] = (time.perf_counter() - start) * 1000
        return value

    claimed = timed(
        "claim",
        pipeline.claim_job,
        chain,
        engine.get_catalog(),
        store,
        job_id,
        engine.price_per_token_wei,
    )
    model = timed("fetch-model", pipeline.fetch_model, engine.get_catalog(), claimed)
    cached = timed("cache-lookup", pipeline.look_up_cache, cache, model, claimed)
    result = timed("infer", pipeline.infer, engine.get_client(), cache, model, claimed, cached)
    stored = timed("store-result", pipeline.store_result, store, claimed, model, result)
    proof = timed(
        "prove",
        pipeline.prove_billing,
        prover.get_client(),
        Path(prover.work_dir),
        claimed,
        model,
        stored,
        result,
    )
    timed("settle", pipeline.settle_job, chain, claimed, stored, result, proof)
    return timings


def _run_flow(job_id: int) -> tuple[dict[str, float], float]:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.inference_job import inference_job

    start = time.perf_counter()
    state = inference_job(job_id, return_state=True)
    wall_ms = (time.perf_counter() - start) * 1000

    async def task_durations() -> dict[str, float]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
                )
            )
        # Task runs are named "<step>-<job id>".
        return {
            run.name.rsplit("-", 1)[0]: run.total_run_time.total_seconds() * 1000 for run in runs
        }

    return asyncio.run(task_durations()), wall_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fabstir-bench-"))
    os.environ["PREFECT_HOME"] = str(workdir / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["FABSTIR_HOME"] = str(workdir / "home")
    os.environ.setdefault(
        "FABSTIR_CACHE__EMBEDDING_MODEL_PATH",
        str(Path(".fabstir/models/minilm-l6-v2-f16.gguf").resolve()),
    )
    os.environ.setdefault("FABSTIR_PROVER__WORK_DIR", str(Path(".fabstir/proofs").resolve()))

    from fabstir.chain import ChainClient, Devnet
    from fabstir.settings import ANVIL_KEYS, load_settings
    from fabstir.storage import ObjectStore, put_content

    settings = load_settings()
    price = settings.host.price_per_token_wei
    with Devnet(deployment_file=settings.chain.deployment_file) as deployment:
        host = ChainClient(deployment.rpc_url, deployment, ANVIL_KEYS[1])
        renter = ChainClient(deployment.rpc_url, deployment, ANVIL_KEYS[2])
        host.register([spec.id for spec in settings.host.models], price)
        uri, digest = put_content(
            ObjectStore(str(settings.storage.url)), PROMPT.encode(), "prompts"
        )

        def post() -> int:
            return renter.post_job(
                settings.host.models[0].id,
                digest,
                uri,
                MAX_TOKENS,
                price,
                MAX_TOKENS * price,
                int(time.time()) + 3600,
            )

        # Separate caches, so both runs miss and do the same work.
        os.environ["FABSTIR_CACHE__URI"] = str(workdir / "cache-direct")
        warm = _run_direct(post())  # loads models, keys and Prefect once before measuring
        os.environ["FABSTIR_CACHE__URI"] = str(workdir / "cache-warm-flow")
        _run_flow(post())
        os.environ["FABSTIR_CACHE__URI"] = str(workdir / "cache-direct-2")
        direct = _run_direct(post())
        os.environ["FABSTIR_CACHE__URI"] = str(workdir / "cache-flow")
        flow_steps, flow_wall_ms = _run_flow(post())
    del warm
    direct_total = sum(direct.values())
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"python {platform.python_version()}",
        "direct_ms": {step: round(direct[step], 1) for step in STEPS},
        "flow_task_ms": {step: round(flow_steps.get(step, float("nan")), 1) for step in STEPS},
        "direct_total_ms": round(direct_total, 1),
        "flow_wall_ms": round(flow_wall_ms, 1),
        "overhead_ms": round(flow_wall_ms - direct_total, 1),
        "flow_minus_infer_prove_ms": round(
            flow_wall_ms - flow_steps.get("infer", 0) - flow_steps.get("prove", 0), 1
        ),
    }
    if not args.json:
        print(f"{'step':14} {'direct ms':>10} {'flow task ms':>13}")
        for step in STEPS:
            print(f"{step:14} {report['direct_ms'][step]:>10} {report['flow_task_ms'][step]:>13}")
        for key in ("direct_total_ms", "flow_wall_ms", "overhead_ms", "flow_minus_infer_prove_ms"):
            print(f"{key}: {report[key]}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
