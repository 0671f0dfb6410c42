"""Plain data passed between the pipeline's steps (JSON-serialisable, so Prefect can persist it)."""

from __future__ import annotations

from enum import IntEnum

from pydantic import BaseModel, ConfigDict, Field

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class JobState(IntEnum):
    """Mirror of JobMarketplace.JobState (same order)."""

    NONE = 0
    POSTED = 1
    CLAIMED = 2
    SETTLED = 3
    REFUNDED = 4


class Job(BaseModel):
    """A job as recorded on chain. Hashes are 0x-prefixed 32-byte hex strings."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    renter: str
    host: str = Field(description="Address that claimed the job, or the zero address.")
    model_id: str = Field(description="keccak256 of the model's name.")
    prompt_hash: str = Field(description="SHA-256 of the prompt document.")
    prompt_uri: str
    max_tokens: int
    price_per_token_wei: int
    deposit_wei: int
    deadline: int = Field(description="Unix time after which the renter may take the deposit back.")
    state: JobState
    result_hash: str
    result_uri: str
    tokens_used: int

    @property
    def max_cost_wei(self) -> int:
        return self.max_tokens * self.price_per_token_wei


class Receipt(BaseModel):
    """The settlement of a job, read back from the chain."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    settle_tx: str
    tokens: int
    paid_to_host_wei: int
    fee_wei: int
    refund_wei: int
    result_uri: str
    result_hash: str


class ClaimedJob(BaseModel):
    """A job this host holds, with the prompt fetched and checked against its hash."""

    model_config = ConfigDict(frozen=True)

    job: Job
    model_name: str
    prompt: str
    claim_tx: str | None = Field(description="None when the job was already ours before this run.")
    receipt: Receipt | None = Field(
        default=None, description="The settlement, when an earlier run already settled the job."
    )


class LocalModel(BaseModel):
    """A model file on this machine whose bytes matched the expected hash."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    sha256: str


class InferenceResult(BaseModel):
    """What the model (or the cache) answered, with llama.cpp's token counts."""

    model_config = ConfigDict(frozen=True)

    text: str
    prompt_tokens: int
    completion_tokens: int
    cache_hit: bool


class StoredResult(BaseModel):
    """Where a result record lives and the SHA-256 of its bytes."""

    model_config = ConfigDict(frozen=True)

    uri: str
    sha256: str = Field(description="0x-prefixed SHA-256 of the stored CBOR bytes.")


class ProofBundle(BaseModel):
    """An EZKL proof with the public values it commits to."""

    model_config = ConfigDict(frozen=True)

    proof_path: str
    public_instances: list[str]
    verified: bool
