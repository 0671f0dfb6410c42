from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.cache import Embedder
from fabstir.cache.minilm_gguf import convert_minilm_to_gguf
from fabstir.settings import EMBEDDING_MODEL_FILE


@pytest.fixture(scope="session")
def minilm_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MiniLM-L6-v2 converted from the installed package (well under a second)."""
    return convert_minilm_to_gguf(tmp_path_factory.mktemp("models") / EMBEDDING_MODEL_FILE)


@pytest.fixture(scope="session")
def embedder(minilm_gguf: Path) -> Embedder:
    return Embedder(minilm_gguf)
