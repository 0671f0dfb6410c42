"""Settings → llama.cpp parameters, and loading models, contexts and adapters.

Every llama.cpp struct the engine builds is filled here from ``EngineSettings``, so one test can
check the whole translation with the loaders replaced.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import weakref
from pathlib import Path
from typing import Any

from fabstir.errors import ConfigError, DependencyMissing
from fabstir.settings import EngineSettings

_open_models: weakref.WeakSet[Any] = weakref.WeakSet()

# ggml_type values (ggml.h) and bytes per element of each KV cache type.
KV_CACHE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8, "bf16": 30}
_KV_BYTES_PER_ELEMENT = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
# llama.h enums, spelled out so the translation needs no llama_cpp import.
SPLIT_MODE_NONE, SPLIT_MODE_LAYER = 0, 1
LOAD_MODE_NONE, LOAD_MODE_MMAP = 0, 1
FLASH_ATTN_DISABLED, FLASH_ATTN_ENABLED = 0, 1
FTYPE_MOSTLY_Q4_0 = 2  # llama_ftype


def _llama_cpp() -> Any:
    try:
        import llama_cpp
        from llama_cpp import _internals, _logger
    except ImportError as exc:
        raise DependencyMissing(
            "llama-cpp-python is not installed: run scripts/bootstrap.sh (make test does)"
        ) from exc
    # Only Llama() quiets llama.cpp's log; the engine builds models and contexts itself.
    _logger.set_verbose(False)
    return llama_cpp, _internals


def model_options(settings: EngineSettings, model_name: str) -> dict[str, Any]:
    """Return the ``llama_model_params`` fields for ``model_name``.

    A model placed on one GPU keeps all its layers there; others split layers across GPUs.
    """
    device = settings.placement.get(model_name)
    return {
        "n_gpu_layers": settings.n_gpu_layers,
        "split_mode": SPLIT_MODE_LAYER if device is None else SPLIT_MODE_NONE,
        "main_gpu": 0 if device is None else device,
        "load_mode": LOAD_MODE_MMAP if settings.use_mmap else LOAD_MODE_NONE,
    }


def context_options(settings: EngineSettings) -> dict[str, Any]:
    """Return the ``llama_context_params`` fields: ``n_ctx`` tokens for each parallel sequence."""
    kv_type = KV_CACHE_TYPES[settings.kv_cache_type]
    return {
        "n_ctx": settings.n_ctx * settings.parallel_sequences,
        # One decode step carries a token of every running sequence.
        "n_batch": max(settings.n_batch, settings.parallel_sequences),
        "n_ubatch": max(settings.n_batch, settings.parallel_sequences),
        "n_seq_max": settings.parallel_sequences,
        # One KV buffer per sequence: our sequences share no prefix (llama.h, kv_unified), and
        # with one shared buffer a greedy answer changed with where its cells landed in it.
        "kv_unified": False,
        "n_threads": settings.n_threads,
        "n_threads_batch": settings.n_threads,
        "type_k": kv_type,
        "type_v": kv_type,
        # llama.cpp needs flash attention for a quantised V cache. Otherwise off, as in
        # llama-cpp-python's Llama: "auto" turns it on and changes greedy answers.
        "flash_attn_type": FLASH_ATTN_ENABLED if kv_type > 1 else FLASH_ATTN_DISABLED,
        "no_perf": True,
    }


def kv_cache_bytes(model: Any, settings: EngineSettings) -> int:
    """Estimate the KV cache of one context of ``model`` (a loaded ``LlamaModel``)."""
    llama_cpp, _ = _llama_cpp()
    handle = model.model
    layers = llama_cpp.llama_model_n_layer(handle)
    head_dim = llama_cpp.llama_model_n_embd(handle) // max(1, llama_cpp.llama_model_n_head(handle))
    kv_width = head_dim * llama_cpp.llama_model_n_head_kv(handle)
    cells = settings.n_ctx * settings.parallel_sequences
    per_element = _KV_BYTES_PER_ELEMENT[settings.kv_cache_type]
    return int(2 * layers * cells * kv_width * per_element)


def load_model(path: str, options: dict[str, Any]) -> Any:
    """Load the weights of a GGUF file (a ``llama_cpp._internals.LlamaModel``), freed at exit.

    Raises:
        DependencyMissing: llama-cpp-python is not installed.
        ConfigError: layers are to go to a GPU, and this llama.cpp has no GPU backend
            (``code="engine_no_gpu"``); it would run them on the CPU, many times slower.
        ValueError: the file is missing or is not a model llama.cpp can load.
    """
    llama_cpp, internals = _llama_cpp()
    if options.get("n_gpu_layers") and not llama_cpp.llama_supports_gpu_offload():
        raise ConfigError(
            "GPU layers were asked for (FABSTIR_ENGINE__N_GPU_LAYERS), but this llama.cpp was "
            "built for the CPU only: rebuild it with FABSTIR_LLAMA_CMAKE_ARGS (e.g. "
            '"-DGGML_CUDA=on") scripts/bootstrap.sh, or set FABSTIR_ENGINE__N_GPU_LAYERS=0',
            code="engine_no_gpu",
            n_gpu_layers=options["n_gpu_layers"],
        )
    params = llama_cpp.llama_model_default_params()
    for field, value in options.items():
        setattr(params, field, value)
    model = internals.LlamaModel(path_model=path, params=params, verbose=False)
    _open_models.add(model)
    return model


def new_context(model: Any, options: dict[str, Any]) -> Any:
    """Create a context (KV cache and compute buffers) on loaded weights."""
    llama_cpp, internals = _llama_cpp()
    params = llama_cpp.llama_context_default_params()
    for field, value in options.items():
        setattr(params, field, value)
    return internals.LlamaContext(model=model, params=params, verbose=False)


def load_adapter(model: Any, path: str) -> Any:
    """Load a LoRA adapter GGUF for ``model``; it is freed together with the model.

    Raises:
        ValueError: the file is not a LoRA adapter that fits the model.
    """
    llama_cpp, _ = _llama_cpp()
    adapter = llama_cpp.llama_adapter_lora_init(model.model, path.encode())
    if not adapter:  # a NULL pointer
        raise ValueError(f"not a LoRA adapter for this model: {path}")
    model._exit_stack.callback(llama_cpp.llama_adapter_lora_free, adapter)
    return adapter


def apply_adapter(context: Any, adapter: Any, scale: float = 1.0) -> None:
    """Make every decode of ``context`` use the LoRA ``adapter``."""
    llama_cpp, _ = _llama_cpp()
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    scales = (ctypes.c_float * 1)(scale)
    if llama_cpp.llama_set_adapters_lora(context.ctx, adapters, 1, scales):
        raise ValueError("llama.cpp refused the LoRA adapter")


def quantize(source: Path, target: Path, ftype: int) -> None:
    """Write ``source`` (a GGUF model, quantised or not) to ``target`` quantised as ``ftype``.

    Raises:
        DependencyMissing: llama-cpp-python is not installed.
        ValueError: llama.cpp could not convert the file.
    """
    llama_cpp, _ = _llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    ):
        raise ValueError(f"llama.cpp could not convert {source}")


def load_llama(model_path: str, **options: Any) -> Any:
    """Return a high-level ``llama_cpp.Llama`` for ``model_path`` (quiet), closed at exit.

    Raises:
        DependencyMissing: llama-cpp-python is not installed.
    """
    _llama_cpp()
    from llama_cpp import Llama

    model = Llama(model_path=model_path, verbose=False, **options)
    _open_models.add(model)
    return model


@atexit.register
def _close_open_models() -> None:
    # Llama.__del__ fails during interpreter teardown, once llama_cpp's module globals are gone.
    for model in list(_open_models):
        model.close()
