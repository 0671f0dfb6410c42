from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fabstir.domain import LocalModel
from fabstir.errors import ConfigError, JobRejected, TransientError
from fabstir.models import EnginePool, ModelDiskCache, SamplingParams, file_sha256
from fabstir.settings import EngineSettings, ModelSpec
from tests.support.tiny_gguf import write_tiny_lora

USER = [{"role": "user", "content": "the cat sat"}]


@pytest.fixture(scope="module")
def pool() -> EnginePool:
    return EnginePool(EngineSettings(n_ctx=256))


def _local(spec: ModelSpec) -> LocalModel:
    return LocalModel(name=spec.id, path=spec.uri, sha256=spec.sha256)


def test_generation_is_deterministic_and_bounded(pool: EnginePool, tiny_model: ModelSpec) -> None:
    engine = pool.engine_for(_local(tiny_model))
    first = engine.generate("the cat sat", max_tokens=12)
    second = engine.generate("the cat sat", max_tokens=12)
    assert first == second
    assert 0 < first.completion_tokens <= 12
    assert first.prompt_tokens > 3
    assert not first.cache_hit


def test_the_model_is_loaded_once_per_process(pool: EnginePool, tiny_model: ModelSpec) -> None:
    assert pool.engine_for(_local(tiny_model)) is pool.engine_for(_local(tiny_model))


def test_prompt_plus_max_tokens_beyond_the_context_is_refused(
    pool: EnginePool, tiny_model: ModelSpec
) -> None:
    engine = pool.engine_for(_local(tiny_model))
    before = engine.generations
    with pytest.raises(JobRejected) as refused:
        engine.generate("the cat sat", max_tokens=500)
    assert refused.value.code == "context_overflow"
    assert refused.value.context["n_ctx"] == 256
    assert engine.generations == before


def test_a_missing_model_file_fails_loudly(pool: EnginePool, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        pool.engine_for(LocalModel(name="x", path=str(tmp_path / "none.gguf"), sha256="f" * 64))


@pytest.mark.parametrize("gpu_layers", [-1, 8])
def test_gpu_layers_on_a_cpu_only_llama_cpp_are_refused(
    tiny_model: ModelSpec, gpu_layers: int
) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama.cpp has a GPU backend: offloading is valid here")
    pool = EnginePool(EngineSettings(n_ctx=256, n_gpu_layers=gpu_layers))
    with pytest.raises(ConfigError) as refused:
        pool.engine_for(_local(tiny_model))
    assert refused.value.code == "engine_no_gpu"
    assert "FABSTIR_LLAMA_CMAKE_ARGS" in str(refused.value)
    assert pool.loaded_bytes == 0
    # The same model loads on the CPU.
    assert EnginePool(EngineSettings(n_ctx=256)).engine_for(_local(tiny_model)) is not None


def test_streamed_pieces_add_up_to_the_answer_and_its_token_count(
    pool: EnginePool, tiny_model: ModelSpec
) -> None:
    engine = pool.engine_for(_local(tiny_model))
    whole = engine.generate("the cat sat", max_tokens=20)
    generation = engine.stream(USER, SamplingParams(max_tokens=20))
    pieces = list(generation)
    assert "".join(piece.text for piece in pieces) == whole.text
    assert sum(piece.tokens for piece in pieces) == generation.completion_tokens == 20
    assert generation.prompt_tokens == whole.prompt_tokens
    assert generation.finish_reason == "length"


def test_a_stop_string_ends_the_answer_before_it(pool: EnginePool, tiny_model: ModelSpec) -> None:
    engine = pool.engine_for(_local(tiny_model))
    full = engine.stream(USER, SamplingParams(max_tokens=40)).text()
    stop = full[10:13]
    generation = engine.stream(USER, SamplingParams(max_tokens=40, stop=(stop,)))
    pieces = list(generation)
    text = "".join(piece.text for piece in pieces)
    assert text == full[: full.index(stop)]
    assert generation.finish_reason == "stop"
    assert sum(piece.tokens for piece in pieces) == generation.completion_tokens < 40


def test_cancelling_stops_decoding_between_tokens(tiny_model: ModelSpec) -> None:
    pool = EnginePool(EngineSettings(n_ctx=512, parallel_sequences=1))
    engine = pool.engine_for(_local(tiny_model))
    running = engine.stream(USER, SamplingParams(max_tokens=450))
    queued = engine.stream(USER, SamplingParams(max_tokens=450))
    queued.cancel()
    for _ in running:
        break  # leaving the stream cancels it
    # With one sequence, this request starts only once the running one has let go of it.
    engine.stream(USER, SamplingParams(max_tokens=1)).text()
    assert running.finish_reason == "cancelled" and 0 < running.completion_tokens < 450
    assert queued.text() == "" and queued.finish_reason == "cancelled"
    assert queued.completion_tokens == 0
    pool.close()


def test_concurrent_requests_get_the_answers_they_get_alone(
    tiny_model: ModelSpec,
) -> None:
    pool = EnginePool(EngineSettings(n_ctx=256, parallel_sequences=3))
    engine = pool.engine_for(_local(tiny_model))
    prompts = [[{"role": "user", "content": f"the cat {word}"}] for word in ("sat", "ran", "sun")]
    alone = [engine.stream(p, SamplingParams(max_tokens=30)).text() for p in prompts]
    together = [engine.stream(p, SamplingParams(max_tokens=30)) for p in prompts]
    assert [generation.text() for generation in together] == alone
    pool.close()


def test_a_request_joining_a_freed_sequence_between_running_ones_gets_its_alone_answer(
    tiny_model: ModelSpec,
) -> None:
    pool = EnginePool(EngineSettings(n_ctx=256, parallel_sequences=3))
    engine = pool.engine_for(_local(tiny_model))
    prompts = [[{"role": "user", "content": f"the cat {word}"}] for word in ("sat", "ran", "sun")]
    requests = [(prompts[0], 40), (prompts[1], 3), (prompts[2], 40), (prompts[1], 20)]
    alone = [engine.stream(p, SamplingParams(max_tokens=n)).text() for p, n in requests]
    running = [engine.stream(p, SamplingParams(max_tokens=n)) for p, n in requests[:3]]
    # The short middle one ends first; the late request takes its sequence between the others.
    middle = running[1].text()
    late = engine.stream(requests[3][0], SamplingParams(max_tokens=requests[3][1])).text()
    assert [running[0].text(), middle, running[2].text(), late] == alone
    pool.close()


def test_greedy_decoding_picks_the_tokens_of_llama_cpps_greedy_sampler(
    pool: EnginePool, tiny_model: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llama_cpp._internals import LlamaSampler

    engine = pool.engine_for(_local(tiny_model))
    ours = engine.stream(USER, SamplingParams(max_tokens=40)).text()

    def greedy_chain(*args: object) -> LlamaSampler:
        sampler = LlamaSampler()
        sampler.add_greedy()
        return sampler

    monkeypatch.setattr("fabstir.models.engine.build_sampler", greedy_chain)
    assert engine.stream(USER, SamplingParams(max_tokens=40)).text() == ours


def test_a_fixed_seed_makes_sampling_repeatable(pool: EnginePool, tiny_model: ModelSpec) -> None:
    engine = pool.engine_for(_local(tiny_model))

    def sample(seed: int) -> str:
        params = SamplingParams(max_tokens=30, temperature=0.9, top_p=0.95, min_p=0.01, seed=seed)
        return engine.stream(USER, params).text()

    assert sample(5) == sample(5)
    assert sample(5) != sample(6)


def test_requests_beyond_the_sequences_queue_and_a_full_queue_refuses(
    tiny_model: ModelSpec,
) -> None:
    pool = EnginePool(EngineSettings(n_ctx=512, parallel_sequences=1, max_queued=1))
    engine = pool.engine_for(_local(tiny_model))
    positions: list[int] = []
    running = engine.stream(USER, SamplingParams(max_tokens=400))
    waiting = engine.stream(
        USER, SamplingParams(max_tokens=400), on_queue_position=positions.append
    )
    assert waiting.queue_position == 1 and positions == [1]
    with pytest.raises(TransientError) as busy:
        engine.stream(USER, SamplingParams(max_tokens=5))
    assert busy.value.code == "engine_busy"
    assert running.text() == waiting.text()
    assert waiting.queue_position is None
    pool.close()


def test_idle_models_unload_to_fit_the_memory_budget(tiny_model: ModelSpec, tmp_path: Path) -> None:
    copy = tmp_path / "copy.gguf"
    shutil.copy(tiny_model.uri, copy)
    other = LocalModel(name="copy", path=str(copy), sha256="c" * 64)
    disk = ModelDiskCache(tmp_path / "cache", 10**9)
    size = Path(tiny_model.uri).stat().st_size
    settings = EngineSettings(n_ctx=256, parallel_sequences=1, memory_budget_bytes=size * 3 // 2)
    pool = EnginePool(settings, disk)
    first = pool.engine_for(_local(tiny_model))
    first.generate("the cat", 4)
    assert pool.engine_for(other) is not first
    assert pool.loaded_bytes <= settings.memory_budget_bytes
    assert pool.generations == 1, "an unloaded engine's generations still count"
    # The first model was unloaded, so loading it again builds a new engine.
    assert pool.engine_for(_local(tiny_model)) is not first
    pool.close()


def test_a_model_over_the_memory_budget_is_a_config_error(tiny_model: ModelSpec) -> None:
    pool = EnginePool(EngineSettings(n_ctx=256, memory_budget_bytes=1000))
    with pytest.raises(ConfigError):
        pool.engine_for(_local(tiny_model))


def test_loaded_models_are_pinned_in_the_disk_cache(tiny_model: ModelSpec, tmp_path: Path) -> None:
    disk = ModelDiskCache(tmp_path / "cache", 10**9)
    pool = EnginePool(EngineSettings(n_ctx=256), disk)
    pool.engine_for(_local(tiny_model))
    with pytest.raises(TransientError):
        disk.remove(tiny_model.sha256)
    pool.close()
    disk.remove(tiny_model.sha256)


def test_a_lora_adapter_changes_the_answers_of_its_base_only(
    pool: EnginePool, tiny_model: ModelSpec, tmp_path: Path
) -> None:
    adapter = write_tiny_lora(tmp_path / "lora.gguf")
    base = _local(tiny_model)
    tuned = LocalModel(name="tuned", path=str(adapter), sha256=file_sha256(adapter), base=base)
    before = pool.engine_for(base).generate("the cat sat", 20)
    tuned_answer = pool.engine_for(tuned).generate("the cat sat", 20)
    assert tuned_answer.text != before.text
    assert tuned_answer.prompt_tokens == before.prompt_tokens
    assert pool.engine_for(base).generate("the cat sat", 20) == before


def test_a_file_that_is_not_an_adapter_is_refused(pool: EnginePool, tiny_model: ModelSpec) -> None:
    base = _local(tiny_model)
    bogus = LocalModel(name="bogus", path=tiny_model.uri, sha256="e" * 64, base=base)
    with pytest.raises(ValueError, match="LoRA"):
        pool.engine_for(bogus)


def test_a_chat_template_override_replaces_the_gguf_template(tiny_model: ModelSpec) -> None:
    default = EnginePool(EngineSettings(n_ctx=256)).engine_for(_local(tiny_model))
    override = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    settings = EngineSettings(n_ctx=256, chat_templates={tiny_model.id: override})
    plain = EnginePool(settings).engine_for(_local(tiny_model))
    assert plain.generate("the cat", 3).prompt_tokens < default.generate("the cat", 3).prompt_tokens
