"""OpenAI-style sampling parameters and the llama.cpp sampler chain they build."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# How many recent tokens the repetition penalties look at (llama-cpp-python's default).
PENALTY_LAST_N = 64


class SamplingParams(BaseModel):
    """How to pick each next token. Temperature 0 is greedy and byte-identical across runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int = Field(default=256, ge=1, description="Most completion tokens to generate.")
    temperature: float = Field(default=0.0, ge=0, le=2, description="0 = always the likeliest.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    min_p: float = Field(default=0.0, ge=0, le=1, description="Drop tokens below min_p × top.")
    top_k: int = Field(default=0, ge=0, description="Keep the k likeliest tokens (0 = all).")
    presence_penalty: float = Field(default=0.0, ge=-2, le=2, description="OpenAI semantics.")
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2, description="OpenAI semantics.")
    repeat_penalty: float = Field(default=1.0, gt=0, description="llama.cpp's (1 = off).")
    seed: int | None = Field(
        default=None, ge=0, description="Sampling seed; the engine's seed when unset."
    )
    stop: tuple[str, ...] = Field(
        default=(), max_length=4, description="Strings that end the answer (not included)."
    )


def build_sampler(params: SamplingParams, n_vocab: int, default_seed: int) -> Any:
    """Return a llama.cpp sampler chain (``llama_cpp._internals.LlamaSampler``) for ``params``.

    Plain greedy decoding (temperature 0, no penalties) gets None: the scheduler then takes the
    likeliest token itself, for all such sequences of a batch at once.
    """
    penalised = params.repeat_penalty != 1.0 or params.frequency_penalty or params.presence_penalty
    if params.temperature == 0 and not penalised:
        return None
    from llama_cpp._internals import LlamaSampler

    sampler = LlamaSampler()
    if penalised:
        sampler.add_penalties(
            n_vocab,
            PENALTY_LAST_N,
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        )
    if params.temperature == 0:
        sampler.add_greedy()
        return sampler
    if params.top_k:
        sampler.add_top_k(params.top_k)
    if params.top_p < 1:
        sampler.add_top_p(params.top_p, 1)
    if params.min_p:
        sampler.add_min_p(params.min_p, 1)
    sampler.add_temp(params.temperature)
    sampler.add_dist(default_seed if params.seed is None else params.seed)
    return sampler
