"""Node settings: one tree, read from ``FABSTIR_*`` variables (nested with ``__``).

``Settings()`` is built only at entry points (CLI, blocks); each component receives the
sub-model it needs. ``FABSTIR_ENV_FILE`` names a stage file (``deployments/stages/*.env``) whose
values apply where the environment sets none.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from fabstir.errors import ConfigError

# Anvil's well-known development accounts (mnemonic "test test ... junk"); only valid on a devnet.
ANVIL_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
)
DEMO_MODEL_ID = "smollm2-135m-instruct-q4_0"
DEMO_MODEL_SHA256 = "aa4256f3b46eb4add75ece1c0eeac1c6e4f1ec0c93e6fbe64fe1770f4ad09ae8"
# The cache's MiniLM-L6-v2, as fabstir.cache.minilm_gguf writes it, under HOME/models.
EMBEDDING_MODEL_FILE = "minilm-l6-v2-bf16.gguf"


def demo_model_path() -> Path:
    """Where bootstrap puts the demo model (``fabstir.models.demo_model``): in the Python
    environment, beside the package it is made from, not in a node's home."""
    return Path(sys.prefix) / "share" / "fabstir-node" / f"{DEMO_MODEL_ID}.gguf"


class ModelSpec(BaseModel):
    """A model this host serves: where its bytes are and what they must hash to."""

    id: str = Field(description="Model id as named in jobs; its on-chain id is keccak256 of it.")
    uri: str = Field(description="Path or fsspec URL of the GGUF file.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Expected SHA-256 of the GGUF file.")
    base: str | None = Field(
        default=None, description="For a LoRA adapter GGUF: the id of the model it applies to."
    )


def _default_models() -> list[ModelSpec]:
    path = demo_model_path()
    if not path.is_file():
        return []
    return [ModelSpec(id=DEMO_MODEL_ID, uri=str(path), sha256=DEMO_MODEL_SHA256)]


class Deployment(BaseModel):
    """Where our contracts live on one chain: its RPC, chain id and contract addresses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpc_url: str = Field(description="JSON-RPC URL of the chain.")
    chain_id: int = Field(gt=0, description="Chain id the RPC must report.")
    model_registry: str = Field(description="ModelRegistry address.")
    node_registry: str = Field(description="NodeRegistry address.")
    job_marketplace: str = Field(description="JobMarketplace address.")
    staking_token: str = Field(description="ERC-20 that hosts stake to register.")
    payment_tokens: dict[str, str] = Field(
        default_factory=dict, description="ERC-20s accepted for job payment, by symbol."
    )
    deploy_block: int = Field(default=0, ge=0, description="First block worth scanning for events.")

    @field_validator("model_registry", "node_registry", "job_marketplace", "staking_token")
    @classmethod
    def _checksum(cls, address: str) -> str:
        return _checksummed(address)

    @field_validator("payment_tokens")
    @classmethod
    def _checksum_tokens(cls, tokens: dict[str, str]) -> dict[str, str]:
        return {symbol: _checksummed(address) for symbol, address in tokens.items()}

    def save(self, path: Path) -> None:
        """Write this deployment as JSON to ``path``, creating parent directories."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read a deployment written by :meth:`save`.

        Raises:
            ConfigError: the file is missing (``code="deployment_missing"``) or is not a valid
                deployment (``code="deployment_corrupt"``).
        """
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(
                "deployment file not found; start a devnet or deploy the contracts first",
                code="deployment_missing",
                path=str(path),
            ) from exc
        try:
            return cls.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ConfigError(
                f"deployment file is not a valid deployment: {exc}",
                code="deployment_corrupt",
                path=str(path),
            ) from exc


def _checksummed(address: str) -> str:
    from eth_utils import is_address, to_checksum_address

    if not is_address(address):
        raise ValueError(f"not an address: {address!r}")
    return str(to_checksum_address(address))


DEVNET = "devnet"


class ChainSettings(BaseModel):
    network: str = Field(
        default=DEVNET,
        description="Which chain to use: a key of `networks`, or `devnet` (the deployment_file).",
    )
    networks: dict[str, Deployment] = Field(
        default_factory=dict,
        description="Deployments by network name (JSON): rpc_url, chain_id, contract addresses.",
    )
    rpc_url: str | None = Field(
        default=None, description="Overrides the RPC URL of the chosen network."
    )
    chain_id: int | None = Field(
        default=None,
        gt=0,
        description="Chain id the node expects; a network of another chain is refused.",
    )
    deployment_file: Path | None = Field(
        default=None,
        description="Deployment JSON of `fabstir-node devnet` (default HOME/devnet.json).",
    )
    host_private_key: SecretStr = Field(
        default=SecretStr(ANVIL_KEYS[1]),
        description="Key of the host account that claims and settles.",
    )
    confirmations: int = Field(default=0, ge=0, description="Blocks to wait after a transaction.")
    receipt_timeout_s: float = Field(
        default=60.0, gt=0, description="Give up waiting for a receipt."
    )
    max_gas_price_wei: int = Field(
        default=100 * 10**9, gt=0, description="Never pay more than this per gas (max fee)."
    )
    rpc_attempts: int = Field(
        default=4, ge=1, description="Tries of an RPC request that failed for a transient reason."
    )
    rpc_backoff_s: float = Field(
        default=0.5, ge=0, description="First wait before an RPC retry; doubles each try."
    )
    watch_poll_s: float = Field(
        # Half a second keeps JobPosted → claim under 2 s at two light RPC calls a second.
        default=0.5,
        gt=0,
        description="How often the job watcher asks for new blocks.",
    )
    watch_cursor_file: Path | None = Field(
        default=None,
        description="Last block the job watcher handled (default HOME/watcher-NETWORK.json).",
    )

    def deployment(self) -> Deployment:
        """Return the chosen network's deployment, with ``rpc_url`` applied.

        Raises:
            ConfigError: the network is unknown, its file is missing or corrupt, or it is on
                another chain than ``chain_id``.
        """
        if self.network in self.networks:
            deployment = self.networks[self.network]
        elif self.network == DEVNET and self.deployment_file is not None:
            deployment = Deployment.load(self.deployment_file)
        else:
            raise ConfigError(
                f"unknown network {self.network!r}; configure it in FABSTIR_CHAIN__NETWORKS",
                code="unknown_network",
                known=sorted({DEVNET, *self.networks}),
            )
        if self.rpc_url is not None:
            deployment = deployment.model_copy(update={"rpc_url": self.rpc_url})
        if self.chain_id is not None and deployment.chain_id != self.chain_id:
            raise ConfigError(
                "the network's deployment is on another chain than FABSTIR_CHAIN__CHAIN_ID",
                code="wrong_chain",
                expected_chain_id=self.chain_id,
                deployment_chain_id=deployment.chain_id,
            )
        return deployment


class StorageSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="fsspec base URL for prompts and results (default file://HOME/storage).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="S3 endpoint for s3:// URLs (unset: AWS's own endpoints).",
    )
    s3_access_key_id: SecretStr | None = Field(
        default=None, description="S3 access key id (unset: boto's credential chain)."
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret access key (unset: boto's credential chain)."
    )
    attempts: int = Field(
        default=3, ge=1, le=10, description="Tries per storage call before an outage is raised."
    )


class CacheSettings(BaseModel):
    enabled: bool = Field(default=True, description="Answer repeated prompts from the cache.")
    uri: str | None = Field(default=None, description="LanceDB directory (default HOME/cache).")
    similarity_threshold: float = Field(
        default=0.79,
        gt=0,
        le=1,
        description="Cosine similarity a semantic hit must reach (tuned by benchmarks.cache_eval).",
    )
    embedding_model_path: Path | None = Field(
        default=None, description=f"MiniLM-L6-v2 GGUF (default HOME/models/{EMBEDDING_MODEL_FILE})."
    )
    ttl_s: float = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="Seconds a cached answer may be served, from when it was made (hits do not"
        " extend it).",
    )
    max_entries: int = Field(
        default=1_000_000,
        ge=1,
        description="Entries kept; the least recently used (a hit is a use) are evicted beyond"
        " this.",
    )
    index_min_rows: int = Field(
        default=10_000,
        ge=256,
        description="Rows from which an ANN (IVF_PQ) index replaces the flat scan.",
    )


class EngineSettings(BaseModel):
    n_ctx: int = Field(default=2048, ge=64, description="Context window in tokens, per request.")
    n_threads: int = Field(default=2, ge=1, description="CPU threads for generation.")
    n_batch: int = Field(default=512, ge=1, description="Prompt tokens evaluated per batch.")
    seed: int = Field(default=42, description="Sampling seed for deterministic jobs.")
    n_gpu_layers: int = Field(
        default=0, ge=-1, description="Layers offloaded to the GPU (-1 = all, 0 = CPU only)."
    )
    kv_cache_type: Literal["f32", "f16", "bf16", "q8_0", "q4_0"] = Field(
        default="f16",
        description="Data type of the KV cache (quantised types enable flash attention).",
    )
    use_mmap: bool = Field(default=True, description="Map model files instead of reading them in.")
    parallel_sequences: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Generations per model decoded together in one batch; more wait in a queue.",
    )
    max_queued: int = Field(
        default=64, ge=0, description="Requests per model that may wait for a free sequence."
    )
    memory_budget_bytes: int = Field(
        default=16 * 2**30,
        gt=0,
        description="Model weights plus KV caches kept loaded; idle models unload to make room.",
    )
    chat_templates: dict[str, str] = Field(
        default_factory=dict,
        description="Jinja chat template per model id, replacing the one in the GGUF metadata.",
    )
    placement: dict[str, int] = Field(
        default_factory=dict,
        description="GPU index per model id; unlisted models split their layers across all GPUs.",
    )


class ModelStoreSettings(BaseModel):
    dir: Path | None = Field(
        default=None, description="Where verified model files are kept (default HOME/models)."
    )
    disk_budget_bytes: int = Field(
        default=100 * 2**30,
        gt=0,
        description="Disk the model files may use; least recently used unloaded models go first.",
    )
    registry_ttl_s: float = Field(
        default=5.0,
        ge=0,
        allow_inf_nan=False,
        description="How long a model's registry record is reused before the chain is read again: "
        "an update is noticed at most this late. 0 reads it for every job.",
    )
    update_poll_s: float = Field(
        default=60.0,
        ge=0,
        allow_inf_nan=False,
        description="How often `fabstir-node run` reads the registry for each served model, so a "
        "new version downloads, verifies and takes over while the node is idle. 0 turns the poll "
        "off: the next job notices the update.",
    )


# JobMarketplace.MAX_PRICE_PER_TOKEN: no job can pay more, so a higher price is never paid.
MAX_PRICE_PER_TOKEN = 2**88 - 1


class HostSettings(BaseModel):
    price_per_token_wei: int = Field(
        default=10**12,
        gt=0,
        le=MAX_PRICE_PER_TOKEN,
        description="Our price per output token, in wei (at most 2^88 - 1, the most a job can "
        "offer).",
    )
    models: list[ModelSpec] = Field(
        default_factory=_default_models, description="Models this host serves."
    )
    token_prices: dict[str, int] = Field(
        default_factory=dict,
        description="Our price per output token in each accepted ERC-20, by symbol, in base units.",
    )
    stake: int | None = Field(
        default=None,
        gt=0,
        description="Staking-token base units to stake at registration (default: the minimum).",
    )
    region: str = Field(default="", max_length=32, description="Region code registered on chain.")
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        min_length=1,
        description="URL renters reach this node's API at, registered on chain.",
    )
    metadata_uri: str = Field(default="", description="URI of a metadata document about this host.")

    @field_validator("token_prices")
    @classmethod
    def _positive_prices(cls, prices: dict[str, int]) -> dict[str, int]:
        for symbol, price in prices.items():
            if not 0 < price <= MAX_PRICE_PER_TOKEN:
                raise ValueError(f"price for {symbol} must be > 0 and at most 2^88 - 1")
        return prices


class ProverSettings(BaseModel):
    work_dir: Path | None = Field(
        default=None, description="Circuit and key cache, and proofs (default HOME/proofs)."
    )
    srs_path: Path | None = Field(
        default=None,
        description="Ceremony SRS file; unset means the packaged insecure dev SRS (local stage). "
        "The marketplace's verifiers must be generated from the same SRS.",
    )
    spot_check_rate: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Fraction of settled jobs the spot-check flow re-runs to compare outputs.",
    )
    spot_check_seed: str = Field(
        default="fabstir",
        min_length=1,
        description="Seed of the spot-check sample; the same seed picks the same jobs.",
    )


class SettlementSettings(BaseModel):
    """How this host settles its jobs: each alone, or several under one proof and transaction."""

    batch_size: int = Field(
        default=1,
        description="Jobs settled per transaction: 1 (each job by its own flow run), 4 or 16 "
        "(the flow queues the job and the settle-batch deployment settles queued jobs together).",
    )
    max_wait_s: float = Field(
        default=300.0,
        ge=0,
        allow_inf_nan=False,
        description="Settle a partial batch once its oldest job has waited this long.",
    )
    deadline_margin_s: float = Field(
        default=900.0,
        gt=0,
        allow_inf_nan=False,
        description="Never hold a job back when its deadline is this close: settle it now. Keep "
        "it above the settle-batch schedule interval plus the time to prove and submit.",
    )

    @field_validator("batch_size")
    @classmethod
    def _circuit_capacity(cls, batch_size: int) -> int:
        # The billing circuits' capacities (fabstir.proofs.BATCH_CAPACITIES), not imported here
        # so that reading settings does not load the prover's dependencies.
        if batch_size not in (1, 4, 16):
            raise ValueError(f"batch size must be 1, 4 or 16 (a billing circuit), got {batch_size}")
        return batch_size


class MonitoringSettings(BaseModel):
    sample_interval_s: float = Field(
        default=15.0, gt=0, description="How often resources are sampled and a heartbeat written."
    )
    min_free_memory_bytes: int = Field(
        default=2 * 2**30,
        ge=0,
        description="Stop claiming new jobs when less RAM than this is available.",
    )
    min_free_gpu_memory_bytes: int = Field(
        default=2 * 2**30,
        ge=0,
        description="Stop claiming new jobs when every GPU has less free memory than this.",
    )
    max_block_lag: int = Field(
        default=10,
        ge=0,
        description="Not ready when the chain RPC or the job watcher is more blocks behind.",
    )
    max_block_age_s: float = Field(
        default=600.0,
        gt=0,
        description="Not ready when the chain's latest block is older than this (a stalled RPC).",
    )
    heartbeat_file: Path | None = Field(
        default=None, description="Heartbeat samples for uptime (default HOME/heartbeats.jsonl)."
    )
    prefect_api_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="Prefect API the readiness check probes (default: PREFECT_API_URL, if set).",
    )
    min_uptime_ratio: float = Field(
        default=0.99,
        ge=0,
        le=1,
        description="Alert (event fabstir.node.uptime-low) when 24 h uptime falls below this.",
    )


class OrchestrationSettings(BaseModel):
    """How this host runs jobs under Prefect: pool, GPUs, polling and crash detection."""

    work_pool: str = Field(
        default="gpu",
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Prefect work pool of the inference-job deployment (one per pool).",
    )
    host_name: str = Field(
        default_factory=socket.gethostname,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Names this host's GPU concurrency limits and workers (default: hostname).",
    )
    gpus: list[int] = Field(
        default_factory=lambda: [0],
        min_length=1,
        description="GPU indices of this host: one work queue, GCL and worker per GPU.",
    )
    gpu: int | None = Field(
        default=None,
        ge=0,
        description="GPU this process is pinned to; its infer step holds GCL gpu:N. Unset: none.",
    )
    infer_slots_per_gpu: int = Field(
        default=1, ge=1, description="Jobs that may run their infer step on one GPU at once."
    )
    jobs_per_worker: int = Field(
        default=4, ge=1, description="Flow runs one worker (or `fabstir-node run`) runs at once."
    )
    poll_s: float = Field(
        default=0.5, gt=0, le=60, description="How often workers ask Prefect for new runs."
    )
    heartbeat_s: int = Field(
        default=30,
        ge=30,
        le=600,
        description="Flow-run heartbeat period; a run silent for 3 periods is marked crashed.",
    )
    dispatch: Literal["local", "event"] = Field(
        default="local",
        description="`fabstir-node run`: run posted jobs in this process (local, fastest) or "
        "emit a Prefect event that the deployment trigger turns into a worker run (event).",
    )
    server_port: int = Field(
        default=4200,
        ge=1,
        le=65535,
        description="Port of the Prefect server `fabstir-node run` starts when PREFECT_API_URL "
        "is unset.",
    )
    server_niceness: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Niceness added to that server's CPU priority (as `nice -n`): its "
        "bookkeeping of runs and events yields the cores to the node, so a renter's tokens do "
        "not wait for it; 0 = the node's priority.",
    )
    explorer_tx_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S*\{tx\}\S*$",
        description="Block-explorer link for a transaction, with {tx} for its hash.",
    )

    @field_validator("gpus")
    @classmethod
    def _distinct_gpus(cls, gpus: list[int]) -> list[int]:
        if len(set(gpus)) != len(gpus) or min(gpus) < 0:
            raise ValueError("GPU indices must be distinct and >= 0")
        return gpus

    def gpu_limit_name(self, gpu: int) -> str:
        """Name of the global concurrency limit the infer step holds on ``gpu`` of this host."""
        return f"gpu:{self.host_name}:{gpu}"


# The infer step of a flow started at a renter's handshake waits this long at most for the
# request, well inside the step's own 1800 s limit.
MAX_REQUEST_WAIT_S = 60


class ApiSettings(BaseModel):
    """The renter API: where it listens and the limits that keep one caller from starving others."""

    host: str = Field(default="127.0.0.1", min_length=1, description="Address the API binds to.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0 = any free port).")
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    rate_per_ip_per_min: int = Field(
        default=600, ge=1, description="Requests one client address may make per minute (429)."
    )
    rate_per_renter_per_min: int = Field(
        default=120, ge=1, description="Authenticated requests one renter may make per minute."
    )
    max_streams: int = Field(
        default=16, ge=1, description="Answers streamed at once; more get 503 with Retry-After."
    )
    max_claims_per_renter: int = Field(
        default=4,
        ge=1,
        description="Jobs one renter may have claimed at the handshake and not yet asked for "
        "(429 beyond).",
    )
    request_wait_s: float = Field(
        default=10.0,
        ge=0,
        le=MAX_REQUEST_WAIT_S,
        description="How long a job's flow, started when its renter authenticates, waits for "
        "the request before ending (0: start each flow at its request).",
    )
    waiting_flows: int = Field(
        default=2,
        ge=0,
        description="Flows started at handshakes that may wait for their request at once; each "
        "holds one of the runner's jobs_per_worker slots while it waits.",
    )
    first_token_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Longest wait for a job's first token (claim, model load and prompt included).",
    )
    token_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest silence between two tokens of an answer."
    )
    ws_idle_timeout_s: float = Field(
        default=300.0, gt=0, description="A WebSocket session with no frame this long is closed."
    )
    auth_max_ttl_s: int = Field(
        default=3600,
        ge=10,
        description="Latest expiry a signed auth request may name, in seconds from now.",
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
    models: ModelStoreSettings = Field(default_factory=ModelStoreSettings)
    host: HostSettings = Field(default_factory=HostSettings)
    prover: ProverSettings = Field(default_factory=ProverSettings)
    settlement: SettlementSettings = Field(default_factory=SettlementSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

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
            self.cache.embedding_model_path = home / "models" / EMBEDDING_MODEL_FILE
        if self.models.dir is None:
            self.models.dir = home / "models"
        if self.prover.work_dir is None:
            self.prover.work_dir = home / "proofs"
        if self.monitoring.heartbeat_file is None:
            self.monitoring.heartbeat_file = home / "heartbeats.jsonl"
        if self.chain.watch_cursor_file is None:
            self.chain.watch_cursor_file = home / f"watcher-{self.chain.network}.json"
        if self.stage == "real":
            self._check_real_stage()
        return self

    def _check_real_stage(self) -> None:
        missing = []
        if self.chain.rpc_url is None and self.chain.network == DEVNET:
            missing.append("FABSTIR_CHAIN__RPC_URL (or a FABSTIR_CHAIN__NETWORK)")
        if self.chain.network not in (DEVNET, *self.chain.networks):
            missing.append(f"FABSTIR_CHAIN__NETWORKS (with network {self.chain.network!r})")
        if self.prover.srs_path is None:
            missing.append("FABSTIR_PROVER__SRS_PATH")
        if self.chain.host_private_key.get_secret_value() in ANVIL_KEYS:
            missing.append("FABSTIR_CHAIN__HOST_PRIVATE_KEY (the default is a public devnet key)")
        if missing:
            raise ValueError("the real stage needs " + ", ".join(missing))


ENV_FILE_VARIABLE = "FABSTIR_ENV_FILE"


def stage_file() -> Path | None:
    """Return the stage file ``FABSTIR_ENV_FILE`` names, or None when it is unset.

    Raises:
        ConfigError: it names no file (``code="env_file_missing"``); pydantic-settings would
            silently ignore it.
    """
    path = os.environ.get(ENV_FILE_VARIABLE)
    if not path:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"{ENV_FILE_VARIABLE} names no file", code="env_file_missing", path=path)
    return Path(path)


def stage_file_values(prefix: str) -> dict[str, str]:
    """Return the stage file's values whose names start with ``prefix`` (none without a file).

    Raises:
        ConfigError: ``FABSTIR_ENV_FILE`` names no file.
    """
    from dotenv import dotenv_values

    path = stage_file()
    if path is None:
        return {}
    values = dotenv_values(path).items()
    return {key: value for key, value in values if key.startswith(prefix) and value is not None}


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment and the stage file, turning validation errors into
    a ConfigError. A variable set in the environment wins over the stage file.

    Raises:
        ConfigError: a variable has a wrong value (the message names the variable), or
            ``FABSTIR_ENV_FILE`` names no file.
    """
    env_file = stage_file()
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[arg-type, call-arg]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = "FABSTIR_" + "__".join(str(part) for part in error["loc"]).upper()
            # A rule across fields (the stage's) names its variables in its message.
            problems.append(f"{variable}: {error['msg']}" if error["loc"] else error["msg"])
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc
