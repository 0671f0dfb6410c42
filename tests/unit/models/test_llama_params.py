"""Settings → llama.cpp structs, checked with the loaders replaced (no model file needed)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fabstir.models import llama
from fabstir.settings import EngineSettings


class _Captured:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp
    from llama_cpp import _internals

    monkeypatch.setattr(_internals, "LlamaModel", _Captured)
    monkeypatch.setattr(_internals, "LlamaContext", _Captured)
    # The translation for a GPU host, checked on any machine: nothing is loaded.
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)


def test_a_model_placed_on_one_gpu_keeps_all_its_layers_there(captured: None) -> None:
    settings = EngineSettings(n_gpu_layers=-1, placement={"big": 1}, use_mmap=False)
    params = llama.load_model("/m.gguf", llama.model_options(settings, "big")).kwargs["params"]
    assert (params.n_gpu_layers, params.main_gpu) == (-1, 1)
    assert params.split_mode == llama.SPLIT_MODE_NONE
    assert params.load_mode == llama.LOAD_MODE_NONE


def test_an_unplaced_model_splits_its_layers_across_gpus(captured: None) -> None:
    settings = EngineSettings(n_gpu_layers=20, placement={"big": 1})
    params = llama.load_model("/m.gguf", llama.model_options(settings, "small")).kwargs["params"]
    assert (params.n_gpu_layers, params.main_gpu) == (20, 0)
    assert params.split_mode == llama.SPLIT_MODE_LAYER
    assert params.load_mode == llama.LOAD_MODE_MMAP


def test_the_context_holds_n_ctx_for_every_parallel_sequence(captured: None) -> None:
    settings = EngineSettings(n_ctx=1024, parallel_sequences=3, n_batch=256, n_threads=5)
    params = llama.new_context(object(), llama.context_options(settings)).kwargs["params"]
    assert (params.n_ctx, params.n_seq_max, params.n_batch) == (3072, 3, 256)
    assert (params.n_threads, params.n_threads_batch) == (5, 5)
    assert not params.kv_unified
    assert (params.type_k, params.type_v) == (1, 1)  # f16
    assert params.flash_attn_type == llama.FLASH_ATTN_DISABLED


def test_a_quantised_kv_cache_turns_flash_attention_on(captured: None) -> None:
    settings = EngineSettings(kv_cache_type="q8_0")
    params = llama.new_context(object(), llama.context_options(settings)).kwargs["params"]
    assert (params.type_k, params.type_v) == (8, 8)
    assert params.flash_attn_type == llama.FLASH_ATTN_ENABLED


def test_a_batch_always_has_room_for_one_token_per_sequence() -> None:
    options = llama.context_options(EngineSettings(n_batch=2, parallel_sequences=8))
    assert options["n_batch"] == 8


@pytest.mark.parametrize(
    "wrong",
    [
        {"kv_cache_type": "q2_k"},
        {"n_gpu_layers": -2},
        {"parallel_sequences": 0},
        {"memory_budget_bytes": 0},
        {"max_queued": -1},
        {"placement": {"m": "gpu0"}},
    ],
)
def test_wrong_engine_settings_are_refused(wrong: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EngineSettings(**wrong)
