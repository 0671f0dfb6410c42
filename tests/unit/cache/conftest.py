from __future__ import annotations

import hashlib
import re
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest


class BagOfWordsEmbedder:
    """Test double for ``Embedder``: hashed bag of words, so shared words mean similar vectors."""

    dimension = 64

    def __init__(self) -> None:
        self.calls = 0
        self._worker = ThreadPoolExecutor(max_workers=1)

    def submit(self, texts: list[str]) -> Future[np.ndarray]:
        return self._worker.submit(self.embed, texts)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.sha256(word.encode()).digest()
                vectors[row, digest[0] % self.dimension] += 1.0
            vectors[row, -1] += 1e-3  # keep empty texts away from the zero vector
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def fake_embedder() -> BagOfWordsEmbedder:
    return BagOfWordsEmbedder()
