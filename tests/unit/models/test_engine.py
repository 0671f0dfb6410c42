from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.domain import LocalModel
from fabstir.errors import JobRejected
from fabstir.models import EnginePool
from fabstir.settings import EngineSettings, ModelSpec


@pytest.fixture(scope="module")
def pool() -> EnginePool:
    return EnginePool(EngineSettings(n_ctx=128))


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
    assert engine.generations == before


def test_a_missing_model_file_fails_loudly(pool: EnginePool, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        pool.engine_for(LocalModel(name="x", path=str(tmp_path / "none.gguf"), sha256="f" * 64))
