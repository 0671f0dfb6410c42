"""The one engine test on the demo model (SmolLM2-135M): parity with llama-cpp-python's chat."""

from __future__ import annotations

import pytest

from fabstir.domain import LocalModel
from fabstir.models import EnginePool, SamplingParams
from fabstir.models.llama import load_llama
from fabstir.settings import DEMO_MODEL_ID, DEMO_MODEL_SHA256, EngineSettings, demo_model_path

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Write a haiku about the sea."}]


def test_the_engine_answers_exactly_as_llama_cpp_python_and_repeats_itself() -> None:
    path = demo_model_path()
    assert path.is_file(), "the demo model is not made yet: run scripts/bootstrap.sh"
    pool = EnginePool(EngineSettings(n_ctx=512, parallel_sequences=2))
    engine = pool.engine_for(
        LocalModel(name=DEMO_MODEL_ID, path=str(path), sha256=DEMO_MODEL_SHA256)
    )
    generation = engine.stream(MESSAGES, SamplingParams(max_tokens=48))
    pieces = list(generation)
    # Again, decoded in one batch with another request.
    again = engine.stream(MESSAGES, SamplingParams(max_tokens=48))
    other = engine.stream([{"role": "user", "content": "Why do cats purr?"}], SamplingParams())
    again_text = again.text()
    other.cancel()

    raw = load_llama(str(path), n_ctx=512, n_threads=2, n_threads_batch=2, seed=42)
    reference = raw.create_chat_completion(messages=MESSAGES, max_tokens=48, temperature=0)
    raw.close()
    pool.close()

    text = "".join(piece.text for piece in pieces)
    assert text == reference["choices"][0]["message"]["content"]
    assert generation.prompt_tokens == reference["usage"]["prompt_tokens"]
    assert generation.completion_tokens == reference["usage"]["completion_tokens"]
    assert sum(piece.tokens for piece in pieces) == generation.completion_tokens
    assert again_text == text, "greedy decoding is not byte-identical across runs and batches"
