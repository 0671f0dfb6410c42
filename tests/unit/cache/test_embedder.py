from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.cache import Embedder
from fabstir.errors import DependencyMissing


def test_missing_model_names_the_command_that_creates_it(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "minilm-l6-v2-bf16.gguf"
    with pytest.raises(DependencyMissing) as raised:
        Embedder(missing)
    assert f"python -m fabstir.cache.minilm_gguf {missing}" in str(raised.value)
    assert raised.value.code == "dependency_missing"
