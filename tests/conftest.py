"""Fixtures shared by every tier: an isolated environment, a tiny GGUF, the embedding model."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from fabstir.models import file_sha256
from fabstir.settings import EMBEDDING_MODEL_FILE, ModelSpec, StorageSettings
from tests.support.tiny_gguf import write_tiny_gguf

if TYPE_CHECKING:
    from fabstir.proofs import BillingProver

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDING_MODEL = REPO_ROOT / ".fabstir" / "models" / EMBEDDING_MODEL_FILE
TINY_MODEL_ID = "tiny-test-model"
_PREFECT_HOME = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    # Prefect reads these when first imported: keep its database and logs out of the user's home.
    prefect_home = tempfile.mkdtemp(prefix="fabstir-tests-prefect-")
    config.stash[_PREFECT_HOME] = prefect_home
    os.environ["PREFECT_HOME"] = prefect_home
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = "fabstir"
    os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
    os.environ.pop("PREFECT_API_URL", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    prefect_home = config.stash.get(_PREFECT_HOME, None)
    if prefect_home is not None:  # each run made its own: it would be left in /tmp
        shutil.rmtree(prefect_home, ignore_errors=True)


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
def billing_prover(tmp_path_factory: pytest.TempPathFactory) -> BillingProver:
    """A billing prover with the packaged dev SRS, its keys built once for the session."""
    from fabstir.proofs import BillingProver

    prover = BillingProver(tmp_path_factory.mktemp("billing-prover"))
    prover.setup()
    return prover


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    """A tiny random GGUF (gibberish, deterministic at temperature 0) registered as a model."""
    path = write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")
    return ModelSpec(id=TINY_MODEL_ID, uri=str(path), sha256=file_sha256(path))


@dataclass(frozen=True)
class S3Server:
    """moto's S3 server on loopback; any key and secret are accepted."""

    endpoint_url: str
    key: str = "test"
    secret: str = "test"

    def storage_settings(self, bucket: str, prefix: str = "") -> StorageSettings:
        """Settings for ``s3://bucket/prefix`` on this server, creating the bucket if needed."""
        import s3fs

        fs = s3fs.S3FileSystem(key=self.key, secret=self.secret, endpoint_url=self.endpoint_url)
        if not fs.exists(bucket):
            fs.mkdir(bucket)  # no region: s3fs would send a LocationConstraint moto refuses
        return StorageSettings(
            url=f"s3://{bucket}/{prefix}".rstrip("/"),
            s3_endpoint_url=self.endpoint_url,
            s3_access_key_id=SecretStr(self.key),
            s3_secret_access_key=SecretStr(self.secret),
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server (ThreadedMotoServer) on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def embedding_model_path() -> Path:
    """The MiniLM-L6-v2 GGUF that scripts/bootstrap.sh converts once per checkout."""
    if not EMBEDDING_MODEL.exists():
        pytest.fail(f"{EMBEDDING_MODEL} is missing: run scripts/bootstrap.sh (make test does)")
    return EMBEDDING_MODEL
