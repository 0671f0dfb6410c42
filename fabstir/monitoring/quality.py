"""What renters get from this host: per-job response times, earnings, ratings and spot checks.

One row per settled job is kept in storage (``quality/jobs/<job_id>.json``, rewritten whole, so
re-running a job's flow never duplicates it) and read back as a pandas table. Amounts stay
Python integers in base units of their token (an ``object`` column), never floats.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from fabstir.domain import ZERO_ADDRESS, ClaimedJob, InferenceResult, Receipt
from fabstir.errors import ObjectMissing
from fabstir.storage import ObjectStore

if TYPE_CHECKING:
    import pandas as pd

    from fabstir.chain import ChainClient

log = logging.getLogger(__name__)

PREFIX = "quality/jobs"
ETH_SYMBOL = "ETH"
ETH_DECIMALS = 18
INFERENCE_FLOW_NAME = "inference-job"
AMOUNT_COLUMNS = ("paid_to_host", "fee")


class JobQuality(BaseModel):
    """Timings and earnings of one job. Times are unix seconds, durations milliseconds; TTFT and
    decode speed are None for answers served from the cache (no token was generated)."""

    model_config = ConfigDict(frozen=True)

    job_id: int = Field(ge=0)
    model: str
    state: str = Field(description="Final state: settled.")
    started_at: float = Field(
        description="When the answer began: the claim step, or the renter's request to a run "
        "started at the renter's handshake."
    )
    finished_at: float = Field(description="When the job was settled.")
    claim_ms: float = Field(ge=0, description="Reading, checking and claiming the job.")
    ttft_ms: float | None = Field(default=None, ge=0, description="Time to first token.")
    decode_tokens_per_s: float | None = Field(default=None, ge=0)
    completion_tokens: int = Field(ge=0)
    cache_hit: bool
    token: str = Field(description="Payment token symbol (ETH, USDC, ...) or its address.")
    paid_to_host: int = Field(ge=0, description="Base units of the payment token.")
    fee: int = Field(ge=0, description="Protocol fee, base units of the payment token.")

    @property
    def total_ms(self) -> float:
        return (self.finished_at - self.started_at) * 1000


def job_quality(
    claimed: ClaimedJob,
    result: InferenceResult,
    receipt: Receipt,
    token_symbols: Mapping[str, str],
    finished_at: float,
) -> JobQuality:
    """Build the quality row of a settled job; ``token_symbols`` maps token address → symbol."""
    symbols = {address.lower(): symbol for address, symbol in token_symbols.items()}
    symbols[ZERO_ADDRESS] = ETH_SYMBOL
    return JobQuality(
        job_id=claimed.job.job_id,
        model=claimed.model_name,
        state="settled",
        started_at=result.asked_at or claimed.claim_started_at or finished_at,
        finished_at=finished_at,
        claim_ms=claimed.claim_ms or 0.0,
        ttft_ms=result.ttft_ms,
        decode_tokens_per_s=result.decode_tokens_per_s,
        completion_tokens=result.completion_tokens,
        cache_hit=result.cache_hit,
        token=symbols.get(receipt.payment_token.lower(), receipt.payment_token),
        paid_to_host=receipt.paid_to_host_wei,
        fee=receipt.fee_wei,
    )


class QualityLog:
    """The per-job quality rows of this host in an object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def record(self, row: JobQuality) -> None:
        self.store.put(f"{PREFIX}/{row.job_id}.json", row.model_dump_json().encode())

    def rows(self) -> list[JobQuality]:
        rows = []
        for key in self.store.list(PREFIX):
            try:
                rows.append(JobQuality.model_validate_json(self.store.get(key)))
            except ObjectMissing:
                continue  # deleted (erasure) between listing and reading
        return rows

    def frame(self) -> pd.DataFrame:
        return quality_frame(self.rows())


def quality_frame(rows: Sequence[JobQuality]) -> pd.DataFrame:
    """Return the rows as a table with ``total_ms`` and a UTC ``finished`` timestamp; amount
    columns hold exact Python integers."""
    import pandas as pd

    columns = [*JobQuality.model_fields, "total_ms"]
    frame = pd.DataFrame(
        [{**row.model_dump(), "total_ms": row.total_ms} for row in rows], columns=columns
    )
    for column in AMOUNT_COLUMNS:
        frame[column] = pd.Series([int(v) for v in frame[column]], dtype=object)
    frame["finished"] = pd.to_datetime(frame["finished_at"], unit="s", utc=True)
    return frame.sort_values("finished_at", ignore_index=True)


@dataclass(frozen=True)
class RatingSummary:
    """Renters' 1-5 ratings of one host."""

    count: int
    mean: float | None
    distribution: dict[int, int]


def summarize_ratings(scores: Sequence[int]) -> RatingSummary:
    """Summarise 1-5 scores; an out-of-range score is a caller's bug."""
    for score in scores:
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise ValueError(f"a rating is an integer from 1 to 5, got {score!r}")
    counts = Counter(scores)
    return RatingSummary(
        count=len(scores),
        mean=sum(scores) / len(scores) if scores else None,
        distribution={score: counts.get(score, 0) for score in range(1, 6)},
    )


def read_ratings(chain: ChainClient, host: str, from_block: int = 0) -> list[int]:
    """Return the scores renters gave ``host`` on chain (its ``HostRated`` events), oldest first.

    Raises:
        TransientError: the RPC cannot be reached.
    """
    logs = chain.marketplace_events.HostRated().get_logs(
        from_block=from_block, argument_filters={"host": host}
    )
    return [int(entry["args"]["score"]) for entry in logs]


def job_run_states(api_url: str, since: float) -> dict[str, int]:
    """Count the inference-job flow runs started since ``since`` by state, from the Prefect API
    (the only place failed and crashed runs are recorded).

    Raises:
        TransientError: the API cannot be reached.
    """
    import httpx

    from fabstir.errors import TransientError

    body: dict[str, Any] = {
        "flows": {"name": {"any_": [INFERENCE_FLOW_NAME]}},
        "flow_runs": {"start_time": {"after_": _iso(since)}},
        "limit": 200,
    }
    states: Counter[str] = Counter()
    try:
        with httpx.Client(base_url=api_url.rstrip("/"), timeout=10.0) as client:
            offset = 0
            while True:
                response = client.post("/flow_runs/filter", json={**body, "offset": offset})
                response.raise_for_status()
                runs = response.json()
                states.update(run["state_type"].lower() for run in runs if run.get("state_type"))
                if len(runs) < body["limit"]:
                    break
                offset += len(runs)
    except httpx.HTTPError as exc:
        raise TransientError("Prefect API unavailable", api_url=api_url) from exc
    return dict(states)


def _iso(unix_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix_s, UTC).isoformat()


def token_decimals(chain: ChainClient) -> dict[str, int]:
    """Return the decimals of ETH and of each payment token of the deployment, by symbol."""
    from web3 import HTTPProvider, Web3

    from fabstir.chain import load_artifact

    w3 = Web3(HTTPProvider(chain.deployment.rpc_url))
    abi = load_artifact("ERC20Token").abi
    decimals = {ETH_SYMBOL: ETH_DECIMALS}
    for symbol, address in chain.deployment.payment_tokens.items():
        decimals[symbol] = int(w3.eth.contract(address, abi=abi).functions.decimals().call())
    return decimals


def token_symbols(chain: ChainClient) -> dict[str, str]:
    """Return the deployment's payment tokens as address → symbol."""
    return {address: symbol for symbol, address in chain.deployment.payment_tokens.items()}
