"""Plain data passed between the pipeline's steps (JSON-serialisable, so Prefect can persist it)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import IntEnum

from pydantic import BaseModel, ConfigDict, Field

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def chat_prompt(messages: Sequence[Mapping[str, str]]) -> bytes:
    """Return the prompt document of a chat: canonical JSON of its turns' roles and contents.

    A job's prompt hash is the SHA-256 of this document (or of plain text, a single user turn),
    so renter and host derive the same bytes from the same messages.
    """
    turns = [{"role": message["role"], "content": message["content"]} for message in messages]
    return json.dumps(
        {"messages": turns}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def prompt_messages(prompt: str) -> list[dict[str, str]]:
    """Return the chat turns of a prompt document: a chat document's, else one user turn."""
    try:
        document = json.loads(prompt)
    except ValueError:
        document = None
    if isinstance(document, dict) and set(document) == {"messages"}:
        turns = document["messages"]
        if turns and all(
            isinstance(turn, dict)
            and set(turn) == {"role", "content"}
            and all(isinstance(value, str) for value in turn.values())
            for turn in turns
        ):
            return [dict(turn) for turn in turns]
    return [{"role": "user", "content": prompt}]


class JobState(IntEnum):
    """Mirror of JobMarketplace.JobState (same order)."""

    NONE = 0
    POSTED = 1
    CLAIMED = 2
    SETTLED = 3
    REFUNDED = 4
    CANCELLED = 5


class Job(BaseModel):
    """A job as recorded on chain. Hashes are 0x-prefixed 32-byte hex strings.

    Amounts (``price_per_token_wei``, ``deposit_wei``) are in base units of ``payment_token``:
    wei for ETH.
    """

    model_config = ConfigDict(frozen=True)

    job_id: int
    renter: str
    host: str = Field(
        description="The host named by the renter or that claimed the job; zero for an open job."
    )
    payment_token: str = Field(
        default=ZERO_ADDRESS, description="ERC-20 the job pays in; the zero address means ETH."
    )
    fee_bps: int = Field(default=0, description="Protocol fee fixed at claim, basis points.")
    rated: bool = False
    model_id: str = Field(description="keccak256 of the model's name.")
    prompt_hash: str = Field(description="SHA-256 of the prompt document.")
    prompt_uri: str
    max_tokens: int
    price_per_token_wei: int
    deposit_wei: int
    deadline: int = Field(description="Unix time after which the renter may take the deposit back.")
    state: JobState
    result_hash: str
    tokens_used: int
    settled_block: int = Field(
        default=0,
        description="Block of the settlement, 0 before it. The result URI is not stored on chain: "
        "read it from the settlement (ChainClient.result_uri / find_settlement).",
    )

    @property
    def max_cost_wei(self) -> int:
        return self.max_tokens * self.price_per_token_wei


class Receipt(BaseModel):
    """The settlement of a job, read back from the chain.

    Settlement credits the amounts (in base units of ``payment_token``) in the marketplace; the
    host, treasury and renter each withdraw theirs later.
    """

    model_config = ConfigDict(frozen=True)

    job_id: int
    settle_tx: str
    payment_token: str = ZERO_ADDRESS
    tokens: int
    paid_to_host_wei: int
    fee_wei: int
    refund_wei: int
    result_uri: str
    result_hash: str


class SettlementQueued(BaseModel):
    """A job whose result is stored and whose settlement waits for a batch (settle-batch flow).

    Times are chain time (unix seconds of the latest block), as the contract compares deadlines.
    """

    model_config = ConfigDict(frozen=True)

    job_id: int
    tokens: int
    result_uri: str
    result_hash: str
    queued_at: int = Field(description="Chain time the job joined the queue.")
    settle_by: int = Field(
        description="Chain time after which the job is settled without waiting for a full batch."
    )


class ClaimedJob(BaseModel):
    """A job this host holds, with the prompt fetched and checked against its hash."""

    model_config = ConfigDict(frozen=True)

    job: Job
    model_name: str
    prompt: str | None = Field(
        description="None in a run started at the renter's handshake: the renter's request "
        "brings the prompt to the infer step (pipeline.take_request)."
    )
    claim_tx: str | None = Field(description="None when the job was already ours before this run.")
    receipt: Receipt | None = Field(
        default=None, description="The settlement, when an earlier run already settled the job."
    )
    claim_started_at: float | None = Field(
        default=None,
        description="Unix time the answer began (for response-time tracking): the claim step, "
        "or the renter's request that brought the prompt.",
    )
    claim_ms: float | None = Field(default=None, description="How long the claim step took.")


class LocalModel(BaseModel):
    """A model file on this machine whose bytes matched the expected hash."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    sha256: str
    base: LocalModel | None = Field(
        default=None, description="For a LoRA adapter: the model it applies to."
    )


class InferenceResult(BaseModel):
    """What the model (or the cache) answered, with llama.cpp's token counts."""

    model_config = ConfigDict(frozen=True)

    text: str
    prompt_tokens: int
    completion_tokens: int
    cache_hit: bool
    ttft_ms: float | None = Field(
        default=None, description="Time to first token; None when no token was generated."
    )
    decode_tokens_per_s: float | None = Field(
        default=None, description="Tokens after the first over the time after it."
    )
    asked_at: float | None = Field(
        default=None,
        description="Unix time the answer began, for an answer streamed to a renter: its "
        "claim step may have run long before, at the renter's handshake.",
    )


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
