"""Raw llama-cpp-python next to our engine on the same model, prompts and settings.

    python -m benchmarks.engine [--model PATH] [--max-tokens 64] [--repeats 3] [--gpu-layers N]
                                [--json]

Single request: load time, time to first token, decode tokens/s and the decode gap (medians over
the repeats). "Raw" is ``Llama.generate`` on the same chat-template prompt tokens, greedy, one token
per step. The decode gap is the time from the end of one one-token ``llama_decode`` to the start
of the next in the same thread: the per-token work around llama.cpp's forward pass (sampling,
detokenising, bookkeeping, handing the token over). It depends far less on other jobs sharing the
CPUs than tokens/s does.
Concurrency, N = 1, 2, 4 requests with different prompts: completion tokens per second of wall
time for
- raw sequential: one ``Llama``, the N requests one after another (the baseline);
- raw separate contexts: N ``Llama`` objects, one thread each (llama.cpp without batching);
- engine: our engine, the N requests decoded together as sequences of one batched context.
The model defaults to the demo model (SmolLM2-135M-Instruct, Q4_0: see fabstir.models.demo_model).
``--gpu-layers`` offloads that many layers (-1: all) in both, as ``FABSTIR_ENGINE__N_GPU_LAYERS``
does for the node; it needs a llama.cpp built with a GPU backend. There ``llama_decode`` returns
before the GPU has finished, so the decode gap also holds the wait for the step's logits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

PROMPTS = (
    "Write a haiku about the sea.",
    "Explain what a blockchain is in two sentences.",
    "List three uses of a paperclip.",
    "Why do cats purr?",
)
N_CTX = 512
THREADS = 2
SEED = 42
CONCURRENCY = (1, 2, 4)


class _DecodeGaps:
    """While active, record the decode gap (see the module docstring) of every thread, in µs."""

    def __init__(self) -> None:
        import llama_cpp
        import llama_cpp.llama_cpp as bindings

        # The engine calls llama_cpp.llama_decode, llama-cpp-python's Llama the bindings' own.
        self._modules = (llama_cpp, bindings)
        self._decode = bindings.llama_decode
        self._last_end_ns: dict[int, int] = {}
        self.gaps_us: list[float] = []

    def __enter__(self) -> _DecodeGaps:
        for module in self._modules:
            module.llama_decode = self._timed_decode
        return self

    def __exit__(self, *exc: object) -> None:
        for module in self._modules:
            module.llama_decode = self._decode

    def _timed_decode(self, ctx: Any, batch: Any) -> int:
        start = time.perf_counter_ns()
        thread = threading.get_ident()
        last_end = self._last_end_ns.get(thread)
        if batch.n_tokens == 1 and last_end is not None:  # a decode step after another step
            self.gaps_us.append((start - last_end) / 1000)
        status = self._decode(ctx, batch)
        self._last_end_ns[thread] = time.perf_counter_ns()
        return status


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _raw(path: str, gpu_layers: int = 0) -> Any:
    from fabstir.models.llama import load_llama

    return load_llama(
        path,
        n_ctx=N_CTX,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        seed=SEED,
        n_gpu_layers=gpu_layers,
    )


def _raw_stream(llm: Any, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """Return (seconds to first token, seconds in total, completion tokens) of one raw request.

    It runs in a thread of its own. llama.cpp here is built with OpenMP, and every thread that
    decodes keeps an OpenMP team while it lives; with more team threads than cores, libgomp stops
    spin-waiting at barriers and each decode becomes ~1.7x slower. Raw decoding in the main
    thread would leave such a team behind and slow the engine's worker thread measured after it.
    """
    result: list[tuple[float, float, int]] = []
    thread = threading.Thread(target=lambda: result.append(_raw_request(llm, prompt, max_tokens)))
    thread.start()
    thread.join()
    if not result:
        raise RuntimeError("raw request failed; see the thread's traceback above")
    return result[0]


def _raw_request(llm: Any, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """Run one raw request in the calling thread; ``Llama.generate`` yields one token at a time,
    so tokens are counted exactly; the prompt is the chat template rendering the engine uses."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=llm._model.token_get_text(llm.token_eos()),
        bos_token=llm._model.token_get_text(llm.token_bos()),
    )
    formatted = formatter(messages=_messages(prompt))
    tokens = llm.tokenize(
        formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
    )
    start = time.perf_counter()
    first = None
    completion = 0
    llm.set_seed(SEED)
    # Forget the previous request: Llama.generate would otherwise reuse its KV cache for a shared
    # prefix, which the engine does not do.
    llm.reset()
    llm._ctx.kv_cache_clear()
    for token in llm.generate(tokens, temp=0, reset=True):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        first = first or time.perf_counter()
        completion += 1
        if completion >= max_tokens:
            break
    end = time.perf_counter()
    return (first or end) - start, end - start, completion


def _engine(path: str, parallel: int, gpu_layers: int) -> tuple[Any, Any]:
    from fabstir.domain import LocalModel
    from fabstir.models import EnginePool
    from fabstir.settings import EngineSettings

    settings = EngineSettings(
        n_ctx=N_CTX,
        n_threads=THREADS,
        seed=SEED,
        parallel_sequences=parallel,
        n_gpu_layers=gpu_layers,
    )
    pool = EnginePool(settings)
    engine = pool.engine_for(LocalModel(name="bench", path=path, sha256="bench"))
    return pool, engine


def _engine_stream(engine: Any, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    from fabstir.models import SamplingParams

    start = time.perf_counter()
    first = None
    generation = engine.stream(_messages(prompt), SamplingParams(max_tokens=max_tokens))
    for piece in generation:
        if piece.tokens:
            first = first or time.perf_counter()
    end = time.perf_counter()
    return (first or end) - start, end - start, generation.completion_tokens


def _in_threads(calls: list[Callable[[], int]]) -> tuple[float, int]:
    """Run the calls at once, one thread each; return (wall seconds, tokens they made)."""
    results = [0] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, sum(results)


def _single(
    path: str, max_tokens: int, repeats: int, gpu_layers: int
) -> dict[str, dict[str, float]]:
    metrics = ("load_s", "ttft_s", "decode_tok_s", "decode_gap_us")
    rows: dict[str, dict[str, list[float]]] = {
        name: {metric: [] for metric in metrics} for name in ("raw", "engine")
    }
    for _ in range(repeats):
        for name in ("raw", "engine"):
            start = time.perf_counter()
            if name == "raw":
                llm = _raw(path, gpu_layers)
                load = time.perf_counter() - start
                _raw_stream(llm, PROMPTS[0], 4)  # warm-up: graph allocation, Jinja compile
                with _DecodeGaps() as gaps:
                    ttft, total, tokens = _raw_stream(llm, PROMPTS[0], max_tokens)
                llm.close()
            else:
                pool, engine = _engine(path, parallel=1, gpu_layers=gpu_layers)
                load = time.perf_counter() - start
                _engine_stream(engine, PROMPTS[0], 4)
                with _DecodeGaps() as gaps:
                    ttft, total, tokens = _engine_stream(engine, PROMPTS[0], max_tokens)
                pool.close()
            rows[name]["load_s"].append(load)
            rows[name]["ttft_s"].append(ttft)
            rows[name]["decode_tok_s"].append((tokens - 1) / max(total - ttft, 1e-9))
            rows[name]["decode_gap_us"].append(statistics.median(gaps.gaps_us))
    return {
        name: {metric: statistics.median(values) for metric, values in metrics.items()}
        for name, metrics in rows.items()
    }


def _concurrent(
    path: str, max_tokens: int, repeats: int, gpu_layers: int
) -> dict[str, dict[int, float]]:
    figures: dict[str, dict[int, list[float]]] = {
        "raw_sequential": {n: [] for n in CONCURRENCY},
        "raw_separate_contexts": {n: [] for n in CONCURRENCY},
        "engine_batched": {n: [] for n in CONCURRENCY},
    }
    raws = [_raw(path, gpu_layers) for _ in range(max(CONCURRENCY))]
    for llm in raws:
        _raw_stream(llm, PROMPTS[0], 4)
    for _ in range(repeats):
        for n in CONCURRENCY:
            prompts = PROMPTS[:n]
            start = time.perf_counter()
            tokens = sum(_raw_stream(raws[0], p, max_tokens)[2] for p in prompts)
            figures["raw_sequential"][n].append(tokens / (time.perf_counter() - start))
            wall, tokens = _in_threads(
                [
                    lambda i=i, p=p: _raw_request(raws[i], p, max_tokens)[2]
                    for i, p in enumerate(prompts)
                ]
            )
            figures["raw_separate_contexts"][n].append(tokens / wall)
            # A fresh engine each time: its worker thread, and so its OpenMP team (see
            # _raw_stream), lives only while it is measured.
            pool, engine = _engine(path, parallel=max(CONCURRENCY), gpu_layers=gpu_layers)
            _engine_stream(engine, PROMPTS[0], 4)
            wall, tokens = _in_threads(
                [lambda p=p, e=engine: _engine_stream(e, p, max_tokens)[2] for p in prompts]
            )
            pool.close()
            figures["engine_batched"][n].append(tokens / wall)
    for llm in raws:
        llm.close()
    return {
        name: {n: statistics.median(values) for n, values in by_n.items()}
        for name, by_n in figures.items()
    }


def main() -> None:
    from fabstir.settings import demo_model_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(demo_model_path()), help="GGUF file to run.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--gpu-layers", type=int, default=0, help="Layers offloaded to the GPU (-1: all)."
    )
    parser.add_argument("--json", action="store_true", help="End with one JSON object.")
    args = parser.parse_args()
    if args.max_tokens < 2 or args.repeats < 1 or args.gpu_layers < -1:
        parser.error(
            "--max-tokens must be at least 2, --repeats at least 1 and --gpu-layers at least -1"
        )
    if not os.path.isfile(args.model):
        parser.error(f"no model file at {args.model}")

    import llama_cpp

    if args.gpu_layers and not llama_cpp.llama_supports_gpu_offload():
        parser.error("--gpu-layers needs llama.cpp built with a GPU backend; this one is CPU-only")
    # The machine may be shared: the load around the run says how far to trust the figures.
    load_before = os.getloadavg()[0]
    single = _single(args.model, args.max_tokens, args.repeats, args.gpu_layers)
    concurrent = _concurrent(args.model, args.max_tokens, args.repeats, args.gpu_layers)
    load_after = os.getloadavg()[0]
    ratios = {
        "load_time_raw_over_engine": single["raw"]["load_s"] / single["engine"]["load_s"],
        "ttft_raw_over_engine": single["raw"]["ttft_s"] / single["engine"]["ttft_s"],
        "decode_engine_over_raw": single["engine"]["decode_tok_s"] / single["raw"]["decode_tok_s"],
        "decode_gap_raw_over_engine": single["raw"]["decode_gap_us"]
        / single["engine"]["decode_gap_us"],
        **{
            f"throughput_{n}_engine_over_raw_sequential": concurrent["engine_batched"][n]
            / concurrent["raw_sequential"][n]
            for n in CONCURRENCY
        },
        **{
            f"throughput_{n}_engine_over_separate_contexts": concurrent["engine_batched"][n]
            / concurrent["raw_separate_contexts"][n]
            for n in CONCURRENCY
        },
    }
    report = {
        "model": os.path.basename(args.model),
        "max_tokens": args.max_tokens,
        "repeats": args.repeats,
        "gpu_layers": args.gpu_layers,
        "single": single,
        "concurrent_tok_s": concurrent,
        "ratios": ratios,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "llama_cpp_python": llama_cpp.__version__,
            "threads": THREADS,
            "load_average_1m": {"before": load_before, "after": load_after},
        },
    }
    print(f"{'single request':<28}{'raw':>12}{'engine':>12}")
    for metric in ("load_s", "ttft_s", "decode_tok_s", "decode_gap_us"):
        print(f"{metric:<28}{single['raw'][metric]:>12.3f}{single['engine'][metric]:>12.3f}")
    print(f"\n{'completion tok/s':<28}" + "".join(f"{'N=' + str(n):>10}" for n in CONCURRENCY))
    for name, by_n in concurrent.items():
        print(f"{name:<28}" + "".join(f"{by_n[n]:>10.1f}" for n in CONCURRENCY))
    print()
    for name, value in ratios.items():
        print(f"{name:<48}{value:>8.3f}")
    print(f"\n1-minute load average: {load_before:.2f} before, {load_after:.2f} after")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
