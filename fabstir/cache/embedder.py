"""Sentence embeddings from the MiniLM-L6-v2 GGUF, run by llama.cpp."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from fabstir.errors import DependencyMissing
from fabstir.models.llama import load_llama

log = logging.getLogger(__name__)

# all-MiniLM-L6-v2 was trained on 256-token inputs (sentence-transformers' max_seq_length);
# longer prompts are truncated, as the reference model does.
MAX_TOKENS = 256
# One thread: a lookup's embedding is a few milliseconds of work, and two threads meet at a
# barrier after every op. When the other core is busy (inference always is, on a working node)
# the barrier waits for a time slice: p99 338 ms and stalls past 1 s with two threads, 9.6 ms with
# one, for p50 1.8 ms against 2.8 (300 dev prompts, interleaved, 2 cores at load 2.5).
EMBED_THREADS = 1


class Embedder:
    """Embed texts into L2-normalised vectors with one llama.cpp model loaded per process.

    Calls are serialised: a llama.cpp context is not safe to use from two threads at once.
    """

    def __init__(self, model_path: Path, n_threads: int = EMBED_THREADS) -> None:
        """Load the GGUF once.

        Raises:
            DependencyMissing: the model file or llama-cpp-python is not installed.
        """
        model_path = Path(model_path)
        if not model_path.is_file():
            raise DependencyMissing(
                f"embedding model not found at {model_path}; create it with: "
                f"python -m fabstir.cache.minilm_gguf {model_path}",
                path=str(model_path),
            )
        self.model_path = model_path
        self._llama: Any = load_llama(
            str(model_path),
            embedding=True,
            n_ctx=MAX_TOKENS,
            n_batch=MAX_TOKENS,
            n_threads=n_threads,
            n_threads_batch=n_threads,
        )
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self.dimension: int = int(self._llama.n_embd())
        log.debug("loaded embedding model", extra={"path": str(model_path), "dim": self.dimension})

    def submit(self, texts: list[str]) -> Future[np.ndarray]:
        """Start embedding ``texts`` on the embedder's own thread; the future holds ``embed``'s
        result. llama.cpp releases the GIL, so the caller's thread runs on meanwhile."""
        return self._worker.submit(self.embed, list(texts))

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return one unit-length float32 row per text, shape ``(len(texts), dimension)``."""
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        with self._lock:
            rows = self._llama.embed(list(texts), normalize=False, truncate=True)
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dimension)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, np.finfo(np.float32).tiny)
