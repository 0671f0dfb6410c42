"""Fixtures shared by every tier: an isolated environment, a tiny GGUF, the embedding model."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabstir.models import file_sha256
from fabstir.settings import ModelSpec
from tests.support.tiny_gguf import write_tiny_gguf

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDING_MODEL = REPO_ROOT / ".fabstir" / "models" / "minilm-l6-v2-f16.gguf"
TINY_MODEL_ID = "tiny-test-model"


def pytest_configure(config: pytest.Config) -> None:
    # Prefect reads these when first imported: keep its database and logs out of the user's home.
    prefect_home = tempfile.mkdtemp(prefix="fabstir-tests-prefect-")
    os.environ["PREFECT_HOME"] = prefect_home
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = "fabstir"
    os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Clear FABSTIR_* variables and give each test its own node home."""
    for name in list(os.environ):
        if name.startswith("FABSTIR_"):
            monkeypatch.delenv(name)
    home = tmp_path / "fabstir-home"
    monkeypatch.setenv("FABSTIR_HOME", str(home))
    yield home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    """A tiny random GGUF (gibberish, deterministic at temperature 0) registered as a model."""
    path = write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")
    return ModelSpec(id=TINY_MODEL_ID, uri=str(path), sha256=file_sha256(path))


@pytest.fixture(scope="session")
def embedding_model_path() -> Path:
    """The MiniLM-L6-v2 GGUF that scripts/bootstrap.sh converts once per checkout."""
    if not EMBEDDING_MODEL.exists():
        pytest.fail(f"{EMBEDDING_MODEL} is missing: run scripts/bootstrap.sh (make test does)")
    return EMBEDDING_MODEL
