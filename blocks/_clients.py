"""One core client per block configuration per process (never a model or DB opened per call)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fabstir.settings import Settings, load_settings

if TYPE_CHECKING:
    from fabstir.api import JobStreams

T = TypeVar("T")

_clients: dict[tuple[str, str], Any] = {}
_lock = threading.RLock()  # re-entrant: one client may be built from another


def client_once(kind: str, config_json: str, build: Callable[[], T]) -> T:
    """Return the client built for this configuration in this process, building it on first use."""
    with _lock:
        key = (kind, config_json)
        if key not in _clients:
            _clients[key] = build()
        return _clients[key]


def current_settings() -> Settings:
    return load_settings()


def job_streams() -> JobStreams:
    """Return this process's token streams: the API subscribes, the infer step publishes."""
    from fabstir.api import JobStreams

    return client_once("job-streams", "", JobStreams)
