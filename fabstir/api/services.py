"""What the API works with: the node's clients (given) and its own per-app state (built here)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fabstir.api.auth import AccessControl
from fabstir.api.claims import JobClaims
from fabstir.api.limits import RateLimiter, StreamSlots
from fabstir.api.metrics import ApiMetrics
from fabstir.api.streams import JobStreams
from fabstir.domain import Receipt, SettlementQueued
from fabstir.pipeline import claim_for_renter
from fabstir.settings import ApiSettings

if TYPE_CHECKING:
    from fabstir.cache import Embedder
    from fabstir.chain import ChainClient
    from fabstir.models import EnginePool, ModelManager
    from fabstir.monitoring import CapacityGuard, NodeMetrics
    from fabstir.storage import ObjectStore

JobRunner = Callable[[int], "Future[Receipt | SettlementQueued]"]
"""Start the job's flow (in this process, so it finds the job's stream) and return its future."""

WaitingJobRunner = Callable[[int, float], "Future[Receipt | SettlementQueued | None]"]
"""Start the job's flow to wait up to N s for its renter's request (see JobStreams.prepare)."""


@dataclass(frozen=True)
class ApiServices:
    """The node's clients the API uses; built by the entry point, shared with the job flows."""

    chain: ChainClient
    catalog: ModelManager
    engines: EnginePool
    store: ObjectStore
    streams: JobStreams
    run_job: JobRunner
    proofs_dir: Path
    host_private_key: str = field(repr=False)
    # Our ETH price; a job paid in an ERC-20 is held to our on-chain price for that token.
    price_per_token_wei: int
    embedder: Embedder | None = None
    embedding_model: str = "all-MiniLM-L6-v2"
    node_metrics: NodeMetrics | None = None
    # Used nonces and granted tokens, kept across restarts (None: in memory only).
    access_journal: Path | None = None
    # The claim's headroom check (RAM, GPU memory); None claims whatever the load.
    capacity: CapacityGuard | None = None
    # Starts a job's flow at its renter's handshake; None starts each flow at its request.
    start_waiting_job: WaitingJobRunner | None = None

    def __post_init__(self) -> None:
        if type(self.price_per_token_wei) is not int or self.price_per_token_wei <= 0:
            raise ValueError(
                f"price_per_token_wei must be a positive int, not {self.price_per_token_wei!r}"
            )


@dataclass
class ApiContext:
    """One app's settings, clients and the state it keeps in memory (tokens, limits, metrics)."""

    settings: ApiSettings
    services: ApiServices
    access: AccessControl
    slots: StreamSlots
    metrics: ApiMetrics
    per_renter: RateLimiter
    claims: JobClaims

    @classmethod
    def build(cls, settings: ApiSettings, services: ApiServices) -> ApiContext:
        deployment = services.chain.deployment
        slots = StreamSlots(settings.max_streams)
        return cls(
            settings=settings,
            services=services,
            access=AccessControl(
                chain_id=deployment.chain_id,
                marketplace=deployment.job_marketplace,
                host=services.chain.address,
                max_ttl_s=settings.auth_max_ttl_s,
                journal=services.access_journal,
            ),
            slots=slots,
            metrics=ApiMetrics(),
            per_renter=RateLimiter(settings.rate_per_renter_per_min),
            claims=JobClaims(
                lambda job_id, headroom: claim_for_renter(
                    services.chain,
                    services.catalog,
                    job_id,
                    services.price_per_token_wei,
                    capacity=headroom,
                ),
                slots,
                machine=services.capacity,
                per_renter=settings.max_claims_per_renter,
            ),
        )
