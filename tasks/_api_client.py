"""Prefect API clients that retry a busy SQLite server in milliseconds, not seconds.

A Prefect server on SQLite answers 503 when a write meets another connection's write (the
database is locked, or its snapshot went stale); this is routine right after a job, while the
server records the job's task-run events. Prefect's client waits 2 s before its first retry,
which a job posted at that moment adds to its pickup. The transport here retries such answers
itself after 20–400 ms, then hands the last one to Prefect's own retries.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import certifi
import httpx
from prefect.settings import get_current_settings

BUSY_RETRY_DELAYS_S = (0.02, 0.05, 0.1, 0.2, 0.4)


class BusyRetryTransport(httpx.HTTPTransport):
    """An HTTP transport that re-sends a request answered 503 after each of ``delays_s``."""

    def __init__(self, delays_s: tuple[float, ...] = BUSY_RETRY_DELAYS_S, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._delays_s = delays_s

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for delay_s in self._delays_s:
            response = super().handle_request(request)
            if response.status_code != httpx.codes.SERVICE_UNAVAILABLE:
                return response
            response.read()
            response.close()
            time.sleep(delay_s)
        return super().handle_request(request)


def busy_retry_settings() -> dict[str, Any]:
    """``httpx_settings`` for Prefect's sync client (``get_client(sync_client=True, ...)``).

    A client given a transport leaves TLS, pool limits and connection retries to it, so the
    transport gets what Prefect's client would have set: its TLS settings, 16 connections (8
    kept alive for 25 s) and 3 connection retries.
    """
    api = get_current_settings().api
    tls = ssl.create_default_context(cafile=str(api.ssl_cert_file or certifi.where()))
    if api.tls_insecure_skip_verify:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    transport = BusyRetryTransport(
        verify=tls,
        retries=3,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8, keepalive_expiry=25),
    )
    return {"transport": transport}
