"""Follow the marketplace's job events, confirmations-deep, resuming from a persisted cursor."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from eth_utils import event_abi_to_log_topic

from fabstir.chain.client import ChainClient
from fabstir.chain.contracts import load_artifact
from fabstir.chain.records import ETH
from fabstir.domain import JobState
from fabstir.errors import ConfigError

log = logging.getLogger(__name__)

# Gas a claim plus a submit cost on our contracts (python -m benchmarks.gas: 61k + 146k), rounded
# up: what serving a job costs the host before it earns anything.
SERVE_GAS = 210_000


class JobEventKind(StrEnum):
    POSTED = "JobPosted"
    CLAIMED = "JobClaimed"
    SETTLED = "JobSettled"
    REFUNDED = "JobRefunded"
    CANCELLED = "JobCancelled"


@dataclass(frozen=True)
class JobEvent:
    """One marketplace job event, with its arguments as plain values (hashes as 0x hex)."""

    kind: JobEventKind
    job_id: int
    block_number: int
    log_index: int
    tx_hash: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Eligibility:
    """Which posted jobs this host would take: served model, our price, enough deposit, and
    (for ETH jobs) a maximum payment above the gas that serving it costs.

    Jobs paid in an ERC-20 skip the gas check: there is no exchange rate on chain to compare with.
    With ``direct_prompt_uri``, jobs naming this host with that prompt URI are skipped: the
    renter API runs them when their renter connects, and the prompt reaches us only then.
    """

    host: str
    model_ids: frozenset[str]
    prices: Mapping[str, int]
    serve_gas: int = SERVE_GAS
    direct_prompt_uri: str | None = None

    def skip_reason(self, event: JobEvent, gas_price_wei: int) -> str | None:
        """Return why this host would not take a posted job, or None when it would."""
        job = event.fields
        named = job["host"]
        if named != ETH and named.lower() != self.host.lower():
            return "direct job for another host"
        if (
            self.direct_prompt_uri is not None
            and named != ETH
            and job["promptUri"] == self.direct_prompt_uri
        ):
            return "direct job: the renter API runs it"
        if job["modelId"].lower() not in self.model_ids:
            return "model not served"
        our_price = self.prices.get(job["paymentToken"])
        if our_price is None:
            return "payment token not accepted"
        if job["pricePerToken"] < our_price:
            return "price below ours"
        max_payment = job["maxTokens"] * job["pricePerToken"]
        if job["deposit"] < max_payment:
            return "deposit below max cost"
        if job["paymentToken"] == ETH and max_payment <= self.serve_gas * gas_price_wei:
            return "payment below gas cost"
        return None


def _plain(value: Any) -> Any:
    return "0x" + bytes(value).hex() if isinstance(value, bytes) else value


class JobWatcher:
    """Hand marketplace job events to ``on_event`` in chain order, each once across restarts.

    Only blocks at least ``confirmations`` deep are read. Posted jobs that ``eligibility``
    rejects, or that are no longer open when read (a watcher catching up), are logged and
    skipped; other job events are all handed on. The cursor file records
    the last block read (and its hash) and the last event handed on, after every event, so a
    restarted watcher resumes exactly where the previous one stopped, unless that block is no
    longer on the chain (a devnet started again): then it reads the chain from the start.
    """

    def __init__(
        self,
        chain: ChainClient,
        cursor_path: Path,
        on_event: Callable[[JobEvent], None],
        *,
        eligibility: Eligibility | None = None,
        confirmations: int = 0,
        poll_s: float = 2.0,
        batch_blocks: int = 2_000,
    ) -> None:
        if confirmations < 0 or poll_s <= 0 or batch_blocks < 1:
            raise ValueError("confirmations >= 0, poll_s > 0 and batch_blocks >= 1 are required")
        self._chain = chain
        self._cursor_path = cursor_path
        self._on_event = on_event
        self._eligibility = eligibility
        self._confirmations = confirmations
        self._poll_s = poll_s
        self._batch_blocks = batch_blocks
        self._stopped = threading.Event()
        self._scanned: int | None = None
        self._scanned_hash: str | None = None
        self._last_event: tuple[int, int] = (-1, -1)
        abi = load_artifact("JobMarketplace").abi
        kinds = {kind.value: kind for kind in JobEventKind}
        self._kinds = {
            event_abi_to_log_topic(entry): kinds[entry["name"]]
            for entry in abi
            if entry["type"] == "event" and entry["name"] in kinds
        }

    def start(self) -> None:
        """Load the cursor (or start at the deployment block) and arm the loop.

        Raises:
            ConfigError: the cursor file belongs to another deployment or is corrupt.
        """
        deployment = self._chain.deployment
        self._scanned = deployment.deploy_block - 1
        self._last_event = (-1, -1)
        if self._cursor_path.exists():
            try:
                cursor = json.loads(self._cursor_path.read_text(encoding="utf-8"))
                owner = (cursor["chain_id"], cursor["job_marketplace"])
                scanned, last_event = int(cursor["scanned"]), tuple(cursor["last_event"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(
                    "watcher cursor is corrupt", code="cursor_corrupt", path=str(self._cursor_path)
                ) from exc
            if owner != (deployment.chain_id, deployment.job_marketplace):
                raise ConfigError(
                    "watcher cursor belongs to another deployment",
                    code="cursor_mismatch",
                    path=str(self._cursor_path),
                )
            # A devnet started again has the same chain id and addresses, and its blocks start
            # again: the cursor's block is then missing or another one, and every block of the
            # new chain is read.
            scanned_hash = cursor.get("scanned_hash")
            if scanned_hash is not None and self._chain.block_hash(scanned) != scanned_hash:
                log.warning(
                    "the chain under the watcher's cursor changed; reading it from the start",
                    extra={"scanned": scanned, "deploy_block": deployment.deploy_block},
                )
            else:
                self._scanned = scanned
                self._last_event = (int(last_event[0]), int(last_event[1]))
        self._scanned_hash = self._chain.block_hash(self._scanned) if self._scanned >= 0 else None
        self._stopped.clear()

    def run(self) -> None:
        """Poll until :meth:`stop`; errors propagate so the process can exit non-zero."""
        if self._scanned is None:
            self.start()
        while not self._stopped.is_set():
            self.poll()
            self._stopped.wait(self._poll_s)

    def stop(self) -> None:
        self._stopped.set()

    def poll(self) -> int:
        """Read every new confirmed block once; return how many events were handed on."""
        if self._scanned is None:
            raise RuntimeError("call start() first")
        safe_head = self._chain.block_number() - self._confirmations
        handed = 0
        while self._scanned < safe_head and not self._stopped.is_set():
            first = self._scanned + 1
            last = min(safe_head, first + self._batch_blocks - 1)
            gas_price_wei = self._chain.gas_price_wei() if self._eligibility else 0
            for raw in self._chain.job_logs(first, last):
                handed += self._handle(raw, gas_price_wei)
            self._scanned, self._scanned_hash = last, self._chain.block_hash(last)
            self._save()
        return handed

    def _handle(self, raw: Any, gas_price_wei: int) -> int:
        position = (int(raw["blockNumber"]), int(raw["logIndex"]))
        kind = self._kinds.get(bytes(raw["topics"][0]))
        if kind is None or position <= self._last_event:
            return 0
        decoded = getattr(self._chain.marketplace_events, kind.value)().process_log(raw)
        args = {name: _plain(value) for name, value in decoded["args"].items()}
        event = JobEvent(
            kind=kind,
            job_id=int(args.pop("jobId")),
            block_number=position[0],
            log_index=position[1],
            tx_hash="0x" + bytes(raw["transactionHash"]).hex(),
            fields=args,
        )
        reason = None
        if kind is JobEventKind.POSTED and self._eligibility is not None:
            reason = self._eligibility.skip_reason(event, gas_price_wei)
            # Catching up after downtime (or on a first start) reads jobs that another host, or
            # the renter, has long since taken: each would cost a flow run that fails at claim.
            if reason is None and self._chain.get_job(event.job_id).state is not JobState.POSTED:
                reason = "no longer posted"
        if reason is None:
            self._on_event(event)
        else:
            log.info("ignored job", extra={"job_id": event.job_id, "reason": reason})
        self._last_event = position
        self._save()
        return int(reason is None)

    def _save(self) -> None:
        deployment = self._chain.deployment
        cursor = {
            "chain_id": deployment.chain_id,
            "job_marketplace": deployment.job_marketplace,
            "scanned": self._scanned,
            "scanned_hash": self._scanned_hash,
            "last_event": list(self._last_event),
        }
        self._cursor_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._cursor_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cursor), encoding="utf-8")
        os.replace(tmp, self._cursor_path)
