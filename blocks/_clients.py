"""One core client per block configuration per process (never a model or DB opened per call)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fabstir.settings import Settings, load_settings, stage_file

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


_settings: tuple[tuple[object, ...], Settings] | None = None


def current_settings() -> Settings:
    """The node's settings, built again only when what they are built from has changed: a
    FABSTIR_ variable, the stage file, or the working directory (``home`` resolves against it).
    Every step of every job asks for them, and building them costs ~1 ms. Callers share the
    instance, so none may change it.
    """
    global _settings
    source = _settings_source()
    with _lock:
        if _settings is None or _settings[0] != source:
            _settings = (source, load_settings())
        return _settings[1]


def _settings_source() -> tuple[object, ...]:
    variables = sorted(
        (name.upper(), value)
        for name, value in os.environ.items()
        if name.upper().startswith("FABSTIR_")
    )
    stage = stage_file()
    return (os.getcwd(), tuple(variables), None if stage is None else stage.read_bytes())


def job_streams() -> JobStreams:
    """Return this process's token streams: the API subscribes, the infer step publishes."""
    from fabstir.api import JobStreams

    return client_once("job-streams", "", JobStreams)
