"""Liveness and readiness: each check says whether it passed and, when not, why.

Live means the node's monitor loop is still writing heartbeats. Ready means it may take jobs:
a served model verified, the chain reachable and in sync, storage writable, the Prefect API
answering and headroom for another job.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from fabstir.errors import FabstirError
from fabstir.models import ModelStatus
from fabstir.monitoring.resources import ResourceSample, capacity_problems
from fabstir.monitoring.uptime import Heartbeat
from fabstir.settings import MonitoringSettings
from fabstir.storage import ObjectStore

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0
# A node is live while its last heartbeat is younger than this many sampling intervals.
LIVENESS_INTERVALS = 3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    reason: str | None = None


def passed(name: str) -> Check:
    return Check(name, True)


def failed(name: str, reason: str) -> Check:
    return Check(name, False, reason)


@dataclass(frozen=True)
class Health:
    """The outcome of liveness and readiness: ready only when every readiness check passed."""

    live: Check
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [f"{check.name}: {check.reason}" for check in self.checks if not check.ok]


def check_liveness(beats: Sequence[Heartbeat], now: float, interval_s: float) -> Check:
    """Pass when the latest heartbeat is younger than a few sampling intervals."""
    if not beats:
        return failed("live", "no heartbeat recorded; is the node running?")
    age_s = now - max(beat.at for beat in beats)
    if age_s > LIVENESS_INTERVALS * interval_s:
        return failed("live", f"last heartbeat {age_s:.0f} s ago")
    return passed("live")


def check_models(statuses: Sequence[ModelStatus]) -> Check:
    """Pass when at least one served model is present and verified."""
    if not statuses:
        return failed("model_loaded", "no model is configured")
    if any(status.ok for status in statuses):
        return passed("model_loaded")
    problems = "; ".join(f"{status.name}: {status.problem}" for status in statuses)
    return failed("model_loaded", f"no served model is usable ({problems})")


def check_chain(
    rpc_url: str,
    settings: MonitoringSettings,
    *,
    now: float | None = None,
    watcher_block: int | None = None,
) -> Check:
    """Pass when the RPC answers, is not syncing more than ``max_block_lag`` blocks behind, its
    latest block is fresh, and the job watcher (when given) is within the lag too."""
    from web3 import HTTPProvider, Web3

    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": PROBE_TIMEOUT_S}))
    try:
        head = int(w3.eth.block_number)
        syncing = w3.eth.syncing
        latest_timestamp = int(w3.eth.get_block("latest")["timestamp"])
    except (OSError, ValueError) as exc:
        return failed("chain", f"RPC {rpc_url} unreachable: {type(exc).__name__}: {exc}")
    if syncing:
        lag = int(syncing["highestBlock"]) - int(syncing["currentBlock"])
        if lag > settings.max_block_lag:
            return failed("chain", f"RPC is syncing, {lag} blocks behind")
    age_s = (time.time() if now is None else now) - latest_timestamp
    if age_s > settings.max_block_age_s:
        return failed("chain", f"latest block is {age_s:.0f} s old; the RPC looks stalled")
    if watcher_block is not None and head - watcher_block > settings.max_block_lag:
        return failed("chain", f"job watcher is {head - watcher_block} blocks behind the chain")
    return passed("chain")


def check_storage(store: ObjectStore) -> Check:
    """Pass when a probe object can be written, read back and deleted."""
    key = f"health/probe-{uuid.uuid4().hex}"
    payload = b"fabstir health probe"
    try:
        store.put(key, payload)
        try:
            if store.get(key) != payload:
                return failed("storage", "a probe object read back different bytes")
        finally:
            store.delete(key)
    except (FabstirError, OSError) as exc:
        return failed("storage", f"{store.base_url} not writable: {exc}")
    return passed("storage")


def check_prefect(api_url: str | None) -> Check:
    """Pass when the Prefect API's health endpoint answers."""
    import httpx

    if not api_url:
        return failed("prefect", "no Prefect API configured (PREFECT_API_URL)")
    url = api_url.rstrip("/") + "/health"
    try:
        response = httpx.get(url, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return failed("prefect", f"{url} unreachable: {type(exc).__name__}")
    if response.status_code != 200:
        return failed("prefect", f"{url} answered HTTP {response.status_code}")
    return passed("prefect")


def check_capacity(sample: ResourceSample, settings: MonitoringSettings) -> Check:
    """Pass when RAM and GPU memory are above their floors."""
    problems = capacity_problems(sample, settings)
    return failed("capacity", "; ".join(problems)) if problems else passed("capacity")
