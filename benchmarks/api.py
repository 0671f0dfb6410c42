"""Time to first token and decode speed through the renter API next to raw llama-cpp-python.

    python -m benchmarks.api [--model PATH] [--max-tokens 64] [--repeats 3] [--json]

Same model, prompt, context and greedy decoding. "Raw" is ``Llama.generate`` (as in
``benchmarks.engine``, each request in a thread that ends), measured before the node starts: the
node's engine thread keeps an OpenMP team alive, and a raw decode beside it (in this process or
another on the same 2 cores) runs much slower, flattering the API. "API" is a streamed chat
request to the node (uvicorn on loopback, a devnet with our contracts): the renter's job is
posted and its token obtained before the clock starts, and the handshake claims the job on chain
(as it does for every renter, docs/api.md), so the API's time to first token includes what the
node does per request (the checks, the prompt write, the job's flow up to its infer step: the
claim step's chain read, the model and cache lookups, with model registry records reused for
FABSTIR_MODELS__REGISTRY_TTL_S as in the node) alongside our engine's first token;
tokens/s is the decode rate the client sees after the first token. Store, prove and settle run
after the stream and are not timed. The client keeps one HTTP connection pool, as OpenAI clients
do, so its own setup (~15 ms for an httpx client's SSL context) is not counted. Raw and API are
measured one after the other, so run it on a quiet machine. Medians over the repeats.
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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.engine import THREADS, _raw, _raw_stream
from fabstir import pipeline
from fabstir.domain import Receipt
from fabstir.settings import (
    ANVIL_KEYS,
    ApiSettings,
    EngineSettings,
    ModelSpec,
    ModelStoreSettings,
    smollm2_path,
)

PROMPT = "Write a haiku about the sea."
PRICE_PER_TOKEN_WEI = 10**9
N_CTX = 512


def _start_node(root: Path, spec: ModelSpec) -> tuple[Any, Any, Any]:
    from fabstir.api import ApiServer, ApiServices, JobStreams, create_app
    from fabstir.chain import ETH, ChainClient, Devnet, Offer
    from fabstir.client import RenterClient
    from fabstir.models import ChainModelRegistry, EnginePool, ModelDiskCache, ModelManager
    from fabstir.proofs import BillingProver
    from fabstir.storage import ObjectStore

    devnet = Devnet(deployment_file=root / "devnet.json", models=[spec])
    deployment = devnet.__enter__()
    host = ChainClient(deployment, ANVIL_KEYS[1])
    host.register([Offer(spec.id, PRICE_PER_TOKEN_WEI, ETH)], api_url="http://127.0.0.1:1")
    disk = ModelDiskCache(root / "models", 2**32)
    # As the node builds it (blocks/engine.py): registry records reused for the default TTL.
    catalog = ModelManager(
        ChainModelRegistry(host),
        disk,
        [spec.id],
        registry_ttl_s=ModelStoreSettings().registry_ttl_s,
    )
    engines = EnginePool(EngineSettings(n_ctx=N_CTX, n_threads=THREADS, seed=42), disk)
    prover = BillingProver(root / "prover")
    executor = ThreadPoolExecutor(2)
    box: list[Any] = []

    def run(job_id: int) -> Receipt:
        services = box[0]
        claimed = pipeline.claim_job(host, catalog, services.store, job_id, PRICE_PER_TOKEN_WEI)
        model = pipeline.fetch_model(catalog, claimed)
        result = pipeline.infer(engines, None, model, claimed, None, services.streams)
        stored = pipeline.store_result(services.store, claimed, model, result)
        proof = pipeline.prove_billing(prover, root / "proofs", claimed, stored, result)
        return pipeline.settle_job(host, claimed, stored, result, proof)

    def run_job(job_id: int) -> Future[Receipt]:
        return executor.submit(run, job_id)

    services = ApiServices(
        chain=host,
        catalog=catalog,
        engines=engines,
        store=ObjectStore(f"file://{root / 'storage'}"),
        streams=JobStreams(),
        run_job=run_job,
        proofs_dir=root / "proofs",
        host_private_key=ANVIL_KEYS[1],
        price_per_token_wei=PRICE_PER_TOKEN_WEI,
    )
    box.append(services)
    engines.engine_for(catalog.pull(spec.id))
    server = ApiServer(create_app(ApiSettings(), services), "127.0.0.1", 0)
    server.start()
    threading.Thread(target=server.run, daemon=True).start()
    while True:
        try:
            httpx.get(server.url + "/health")
            break
        except httpx.TransportError:
            time.sleep(0.05)
    host.update_info(region="", api_url=server.url, metadata_uri="")
    renter = RenterClient(deployment, ANVIL_KEYS[2], prover=prover)

    def close() -> None:
        server.stop()
        executor.shutdown(wait=True)
        engines.close()
        devnet.__exit__(None, None, None)

    return server.url, renter, close


def _api_stream(
    http: httpx.Client, url: str, renter: Any, model: str, max_tokens: int
) -> tuple[float, float, int]:
    messages = [{"role": "user", "content": PROMPT}]
    (offer,) = renter.find_hosts(model)
    job_id = renter.post_chat_job(offer, messages, max_tokens=max_tokens)
    token = renter.authenticate(url, job_id)
    body = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = None
    completion = 0
    with http.stream(
        "POST",
        url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=300,
    ) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter()
            if chunk.get("usage"):
                completion = chunk["usage"]["completion_tokens"]
    end = time.perf_counter()
    # Proving and settling run after the stream; let them finish so they don't share the CPU
    # with the next request.
    deadline = time.monotonic() + 120
    while renter.chain.get_job(job_id).tokens_used == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return (first or end) - start, end - start, completion


def _summary(runs: list[tuple[float, float, int]]) -> tuple[float, float]:
    ttft_ms = statistics.median(r[0] for r in runs) * 1000
    rates = [(r[2] - 1) / (r[1] - r[0]) for r in runs if r[2] > 1 and r[1] > r[0]]
    return ttft_ms, statistics.median(rates) if rates else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=smollm2_path(), help="GGUF file.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.model is None or not args.model.exists():
        raise SystemExit("no model: install the demo model (make demo) or pass --model")
    if args.max_tokens < 2 or args.repeats < 1:
        raise SystemExit("--max-tokens must be >= 2 and --repeats >= 1")
    from fabstir.models import file_sha256

    spec = ModelSpec(id="bench-model", uri=str(args.model), sha256=file_sha256(args.model))
    llm = _raw(str(args.model))
    _raw_stream(llm, PROMPT, args.max_tokens)  # warm-up: graph allocation, Jinja compile
    raw = [_raw_stream(llm, PROMPT, args.max_tokens) for _ in range(args.repeats)]
    llm.close()
    api = []
    with tempfile.TemporaryDirectory() as tmp, httpx.Client(timeout=300) as http:
        url, renter, close = _start_node(Path(tmp), spec)
        try:
            _api_stream(http, url, renter, spec.id, args.max_tokens)  # warm-up: keys, caches
            api = [
                _api_stream(http, url, renter, spec.id, args.max_tokens)
                for _ in range(args.repeats)
            ]
        finally:
            close()
    raw_ttft_ms, raw_tok_s = _summary(raw)
    api_ttft_ms, api_tok_s = _summary(api)
    result = {
        "ttft_ratio": round(api_ttft_ms / raw_ttft_ms, 3),
        "tok_s_ratio": round(api_tok_s / raw_tok_s, 3) if raw_tok_s else None,
        "raw_ttft_ms": round(raw_ttft_ms, 2),
        "api_ttft_ms": round(api_ttft_ms, 2),
        "raw_tok_s": round(raw_tok_s, 1),
        "api_tok_s": round(api_tok_s, 1),
        "model": args.model.name,
        "max_tokens": args.max_tokens,
        "repeats": args.repeats,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>12}: {value}")


if __name__ == "__main__":
    main()
