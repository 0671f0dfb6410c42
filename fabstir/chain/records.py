"""What the registries hold, as read back from the chain (amounts in base units)."""

from __future__ import annotations

from typing import NamedTuple

from fabstir.domain import ZERO_ADDRESS

ETH = ZERO_ADDRESS
"""The payment-token address that means the chain's native currency."""


class Offer(NamedTuple):
    """A host's price per output token for a model, in one payment token (``ETH`` or an ERC-20)."""

    model_name: str
    price_per_token: int
    token: str = ETH


class ModelRecord(NamedTuple):
    """A ModelRegistry entry. ``sha256`` is 64 lower-case hex digits, without ``0x``.

    ``base_model_id`` (0x hex) is set for a LoRA adapter: the base model it applies to.
    """

    model_id: str
    sha256: str
    uri: str
    name: str
    active: bool
    base_model_id: str | None = None


class Rating(NamedTuple):
    """Ratings renters gave a host: how many, and the sum of their 1-5 scores."""

    count: int
    score_sum: int


class HostRecord(NamedTuple):
    """A NodeRegistry entry. ``offers`` name models by id (0x hex), since names are not on chain."""

    address: str
    registered: bool
    active: bool
    stake: int
    unlock_at: int
    region: str
    api_url: str
    metadata_uri: str
    offers: tuple[tuple[str, str, int], ...]
    rating: Rating


class Withdrawal(NamedTuple):
    tx_hash: str
    amount: int


class ResultSubmission(NamedTuple):
    """One job of a batch settlement: its result's hash and URI and the billed token count."""

    job_id: int
    result_hash: str
    result_uri: str
    tokens: int


class SubmittedProof(NamedTuple):
    """The billing proof a settlement transaction carried, and every job it settled."""

    job_ids: tuple[int, ...]
    capacity: int
    proof: bytes
