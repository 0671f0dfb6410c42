"""Time to first token and decode speed through the renter API next to raw llama-cpp-python.

    python -m benchmarks.api [--model PATH] [--max-tokens 64] [--repeats 3] [--flow] [--json]

Same model, prompt, context and greedy decoding. "Raw" is ``Llama.generate`` (as in
``benchmarks.engine``, each request in a thread that ends). "API" is a streamed chat request to
the node, which runs in its own process as `fabstir-node serve` does (uvicorn on loopback, a
devnet with our contracts): the renter's job is posted and its token obtained before the clock
starts, and the handshake claims the job on chain (as it does for every renter, docs/api.md), so
the API's time to first token includes what the node does per request (the checks, the prompt
write, the job's flow up to its infer step: the claim step's chain read, the model and cache
lookups, with model registry records reused for FABSTIR_MODELS__REGISTRY_TTL_S as in the node)
alongside our engine's first token. Tokens/s is the decode rate the client sees: the tokens
after the first over the time from the first to the last, on both sides (raw: as its generator
yields them). The API's stream then still sends its finish and usage chunks and ``[DONE]``: that
time is printed apart (``api_stream_end_ms``). Store, prove and settle run after the stream and
are not timed. The client shares the machine's cores with the node, as a remote renter would
not, so it does as little as it can while tokens come: it opens its connection before the clock
starts, notes when each read of the stream arrives, and parses the stream once it has ended.
Raw and API requests alternate, each after a short idle pause, so both see the same machine.
Medians over the repeats.

By default the node runs each job's steps by calling the pipeline directly; with ``--flow`` it
runs them as a Prefect flow run, as `fabstir-node serve` does (a Prefect server of its own on
SQLite, the flow started at the handshake to wait for the request, the cache off as in the direct
path), so the time to first token also holds what Prefect does between the request and the infer
step. Tokens are released to the renter only from that step: when the answer is complete before
the flow gets there, it arrives in one burst and tokens/s says nothing about decoding.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

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
    demo_model_path,
)

PROMPT = "Write a haiku about the sea."
MODEL_ID = "bench-model"
NODE_READY = "node ready: "
# Pause before each measured request: llama.cpp's OpenMP threads spin a little after their last
# step before they sleep, and would compete with the next request's.
IDLE_S = 0.2
PRICE_PER_TOKEN_WEI = 10**9
N_CTX = 512


def _start_node(root: Path, spec: ModelSpec) -> tuple[str, Callable[[], None]]:
    from fabstir.api import ApiServer, ApiServices, JobStreams, create_app
    from fabstir.chain import ETH, ChainClient, Devnet, Offer
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

    def close() -> None:
        server.stop()
        executor.shutdown(wait=True)
        engines.close()
        devnet.__exit__(None, None, None)

    return server.url, close


def _start_serving_node(root: Path, spec: ModelSpec) -> tuple[str, Callable[[], None]]:
    """The node as `fabstir-node serve` builds it (``build_api``): each request's job runs as a
    Prefect flow run, on a Prefect server of its own (SQLite, as `fabstir-node run` starts)."""
    from benchmarks._prefect import start_prefect_server
    from fabstir.chain import ETH, ChainClient, Devnet, Offer
    from fabstir.commands.api import build_api
    from fabstir.settings import load_settings

    prefect = start_prefect_server(root, port=4519)
    os.environ.update(
        {
            "FABSTIR_HOST__MODELS": json.dumps([spec.model_dump(mode="json")]),
            "FABSTIR_HOST__PRICE_PER_TOKEN_WEI": str(PRICE_PER_TOKEN_WEI),
            "FABSTIR_ENGINE__N_CTX": str(N_CTX),
            "FABSTIR_ENGINE__N_THREADS": str(THREADS),
            "FABSTIR_ENGINE__SEED": "42",
            "FABSTIR_API__PORT": "0",
            "FABSTIR_CHAIN__DEPLOYMENT_FILE": str(root / "devnet.json"),
            # Every request repeats the prompt, so the cache would answer all but the first
            # without generating; the direct path has no cache either.
            "FABSTIR_CACHE__ENABLED": "false",
        }
    )
    settings = load_settings()
    devnet = Devnet(deployment_file=root / "devnet.json", models=[spec])
    deployment = devnet.__enter__()
    host = ChainClient(deployment, ANVIL_KEYS[1])
    host.register([Offer(spec.id, PRICE_PER_TOKEN_WEI, ETH)], api_url="http://127.0.0.1:1")
    server = build_api(settings)
    server.start()
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    host.update_info(region="", api_url=server.url, metadata_uri="")

    def close() -> None:
        server.stop()
        serving.join(timeout=120)  # the server waits for its job flows to end
        devnet.__exit__(None, None, None)
        prefect.stop()

    return server.url, close


def _serve_node(root: Path, model: Path, through_flow: bool) -> None:
    """The node's process: start it, say where it listens, serve until stdin closes."""
    from fabstir.models import file_sha256
    from fabstir.service import freeze_startup_heap

    spec = ModelSpec(id=MODEL_ID, uri=str(model), sha256=file_sha256(model))
    start = _start_serving_node if through_flow else _start_node
    url, close = start(root, spec)
    freeze_startup_heap()  # as the node's service group does once its services have started
    print(NODE_READY + json.dumps({"url": url}), flush=True)
    try:
        sys.stdin.read()
    finally:
        close()


@contextmanager
def _node_process(root: Path, model: Path, through_flow: bool) -> Iterator[str]:
    """Run the node in a child process, as `fabstir-node serve` runs apart from its renters,
    and yield its URL; the devnet's deployment is at ``root / "devnet.json"``."""
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.api", "--node-dir", str(root), "--model", str(model)]
        + (["--flow"] if through_flow else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        for line in child.stdout:
            if line.startswith(NODE_READY):
                yield json.loads(line[len(NODE_READY) :])["url"]
                break
        else:
            raise SystemExit(f"the node process exited ({child.wait()}) before it was ready")
    finally:
        child.stdin.close()
        child.wait(timeout=120)


class ApiTiming(NamedTuple):
    """One API request, in seconds from the request unless said otherwise."""

    ttft_s: float
    last_token_s: float
    completion_tokens: int
    stream_end_s: float  # from the last token to the end of the stream
    # POST /v1/auth (signature, claim, and with --flow the job's flow started): before the
    # clock, so not in the time to first token, but a renter waits for it.
    handshake_s: float


def _api_stream(url: str, renter: Any, model: str, max_tokens: int) -> ApiTiming:
    messages = [{"role": "user", "content": PROMPT}]
    (offer,) = renter.find_hosts(model)
    job_id = renter.post_chat_job(offer, messages, max_tokens=max_tokens)
    asked = time.perf_counter()
    token = renter.authenticate(url, job_id)
    handshake_s = time.perf_counter() - asked
    body = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start, received, end = _post_streaming(url, "/v1/chat/completions", token, body)
    first = last = None
    completion = 0
    for arrived, chunk in _sse_chunks(_chunked_body(received)):
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            last = arrived
            first = first or last
        if chunk.get("usage"):
            completion = chunk["usage"]["completion_tokens"]
    # Proving and settling run after the stream; let them finish so they don't share the CPU
    # with the next request.
    deadline = time.monotonic() + 120
    while renter.chain.get_job(job_id).tokens_used == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return ApiTiming(
        (first or end) - start, (last or end) - start, completion, end - (last or end), handshake_s
    )


def _post_streaming(
    url: str, path: str, token: str, body: dict[str, Any]
) -> tuple[float, list[tuple[float, bytes]], float]:
    """POST ``body`` as JSON on a connection opened before the clock starts; return when the
    clock started, each read of the response with the time it arrived, and when it ended.

    A socket, not httpx: the client shares the node's two cores, and httpx's HTTP parser cost
    ~0.13 ms of CPU per read of a token (`time.thread_time`), on the cores that decode the next
    one. Nothing is parsed until the response has ended.
    """
    where = urllib.parse.urlsplit(url)
    payload = json.dumps(body).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + payload
    received: list[tuple[float, bytes]] = []
    with socket.create_connection((where.hostname, where.port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        connection.sendall(request)
        while data := connection.recv(1 << 16):
            received.append((time.perf_counter(), data))
    return start, received, time.perf_counter()


def _chunked_body(received: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """The body of a chunked HTTP/1.1 response read in ``received`` pieces: each chunk, with the
    arrival time of the read that completed it."""
    response = b"".join(data for _, data in received)
    read_ends = list(itertools.accumulate(len(data) for _, data in received))
    status = response[: response.find(b"\r\n")].decode(errors="replace")
    body_at = response.find(b"\r\n\r\n") + 4
    if " 200 " not in status or b"chunked" not in response[:body_at].lower():
        raise SystemExit(f"the API answered {status!r}: {response[body_at:][:500]!r}")
    chunks = []
    at = body_at
    while size := int(response[at : response.index(b"\r\n", at)], 16):
        start = response.index(b"\r\n", at) + 2
        end = start + size
        chunks.append((received[bisect.bisect_left(read_ends, end)][0], response[start:end]))
        at = end + 2
    return chunks


def _sse_chunks(received: list[tuple[float, bytes]]) -> Iterator[tuple[float, dict[str, Any]]]:
    """Each JSON chunk of an SSE body read in ``received`` pieces, with the arrival time of the
    piece that completed its event."""
    pending = b""
    for arrived, data in received:
        *events, pending = (pending + data).split(b"\n\n")
        for event in events:
            if event.startswith(b"data: {"):
                yield arrived, json.loads(event[6:])


def _summary(runs: list[tuple[float, float, int]]) -> tuple[float, float]:
    ttft_ms = statistics.median(r[0] for r in runs) * 1000
    rates = [(r[2] - 1) / (r[1] - r[0]) for r in runs if r[2] > 1 and r[1] > r[0]]
    return ttft_ms, statistics.median(rates) if rates else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=demo_model_path(), help="GGUF file.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--flow",
        action="store_true",
        help="Run each job as a Prefect flow run, as fabstir-node serve does (default: the "
        "pipeline's steps called directly).",
    )
    parser.add_argument("--node-dir", type=Path, help=argparse.SUPPRESS)  # the node's process
    args = parser.parse_args()
    if args.model is None or not args.model.exists():
        raise SystemExit("no model: install the demo model (make demo) or pass --model")
    if args.max_tokens < 2 or args.repeats < 1:
        raise SystemExit("--max-tokens must be >= 2 and --repeats >= 1")
    if args.node_dir is not None:
        _serve_node(args.node_dir, args.model, args.flow)
        return
    raw: list[tuple[float, float, int]] = []
    api: list[tuple[float, float, int]] = []
    timings: list[ApiTiming] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        _node_process(Path(tmp), args.model, args.flow) as url,
    ):
        from fabstir.client import RenterClient
        from fabstir.proofs import BillingProver
        from fabstir.settings import Deployment

        deployment = Deployment.load(Path(tmp) / "devnet.json")
        prover = BillingProver(Path(tmp) / "renter-prover")
        renter = RenterClient(deployment, ANVIL_KEYS[2], prover=prover)
        llm = _raw(str(args.model))
        _raw_stream(llm, PROMPT, args.max_tokens)  # warm-up: graph allocation, Jinja compile
        _api_stream(url, renter, MODEL_ID, args.max_tokens)  # warm-up: keys, caches
        # Interleaved, so that both see the same machine; each starts once the other's
        # threads have gone idle (the API request returns after its job has settled).
        for _ in range(args.repeats):
            time.sleep(IDLE_S)
            raw.append(_raw_stream(llm, PROMPT, args.max_tokens))
            time.sleep(IDLE_S)
            timing = _api_stream(url, renter, MODEL_ID, args.max_tokens)
            api.append((timing.ttft_s, timing.last_token_s, timing.completion_tokens))
            timings.append(timing)
        llm.close()
    raw_ttft_ms, raw_tok_s = _summary(raw)
    api_ttft_ms, api_tok_s = _summary(api)
    result = {
        "ttft_ratio": round(api_ttft_ms / raw_ttft_ms, 3),
        "tok_s_ratio": round(api_tok_s / raw_tok_s, 3) if raw_tok_s else None,
        "raw_ttft_ms": round(raw_ttft_ms, 2),
        "api_ttft_ms": round(api_ttft_ms, 2),
        "raw_tok_s": round(raw_tok_s, 1),
        "api_tok_s": round(api_tok_s, 1),
        "api_stream_end_ms": round(statistics.median(t.stream_end_s for t in timings) * 1000, 2),
        "handshake_ms": round(statistics.median(t.handshake_s for t in timings) * 1000, 1),
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
