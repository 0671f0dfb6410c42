"""Answer cache: MiniLM embeddings (llama.cpp) and a LanceDB table of answers."""

from fabstir.cache.embedder import Embedder
from fabstir.cache.prompts import near_miss_reason, normalise_prompt
from fabstir.cache.semantic import CacheHit, CacheMaintenance, SemanticCache, answer_reusable

__all__ = [
    "CacheHit",
    "CacheMaintenance",
    "Embedder",
    "SemanticCache",
    "answer_reusable",
    "near_miss_reason",
    "normalise_prompt",
]
