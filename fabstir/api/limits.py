"""Limits that keep one caller from starving the others: rates, body size, open streams."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fabstir.api.errors import error_body
from fabstir.errors import LimitExceeded


class RateLimiter:
    """A token bucket per key: ``per_min`` requests a minute, in bursts of up to ``per_min``."""

    def __init__(self, per_min: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_s = per_min / 60.0
        self._capacity = float(per_min)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> None:
        """Count one request of ``key``.

        Raises:
            LimitExceeded: its bucket is empty (``code="rate_limited"``, with ``retry_after_s``).
        """
        now = self._clock()
        with self._lock:
            level, at = self._buckets.get(key, (self._capacity, now))
            level = min(self._capacity, level + (now - at) * self._per_s)
            if level < 1:
                self._buckets[key] = (level, now)
                raise LimitExceeded(
                    "too many requests",
                    code="rate_limited",
                    retry_after_s=(1 - level) / self._per_s,
                )
            self._buckets[key] = (level - 1, now)
            if len(self._buckets) > 100_000:  # forget full buckets: they behave like new ones
                self._buckets = {
                    k: (lvl, t)
                    for k, (lvl, t) in self._buckets.items()
                    if lvl + (now - t) * self._per_s < self._capacity
                }


class StreamSlots:
    """At most ``limit`` answers in progress at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def acquire(self) -> None:
        """Take a slot.

        Raises:
            LimitExceeded: all are taken (``code="too_many_streams"``).
        """
        with self._lock:
            if self._used >= self.limit:
                raise LimitExceeded(
                    "too many answers in progress on this node",
                    code="too_many_streams",
                    retry_after_s=1,
                )
            self._used += 1

    def release(self) -> None:
        with self._lock:
            self._used -= 1


class RequestLimits:
    """ASGI middleware: refuse bodies over ``max_body_bytes`` (413) and rate-limit each client
    address (429); health and metrics probes are exempt from the rate."""

    EXEMPT = frozenset({"/health", "/ready", "/metrics"})

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, per_ip: RateLimiter) -> None:
        self._app = app
        self._max_body_bytes = max_body_bytes
        self._per_ip = per_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        if scope["path"] not in self.EXEMPT:
            client = scope.get("client")
            try:
                self._per_ip.hit(client[0] if client else "unknown")
            except LimitExceeded as exc:
                retry = str(max(1, int(exc.context["retry_after_s"] + 0.999)))
                await self._refuse(scope, send, 429, exc.message, exc.code, retry)
                return
        if scope["type"] == "websocket":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (
            not declared.isdigit() or int(declared) > self._max_body_bytes
        ):
            await self._refuse(scope, send, 413, self._too_large, "body_too_large")
            return
        await self._app(scope, self._counting(receive), send)

    @property
    def _too_large(self) -> str:
        return f"request body over {self._max_body_bytes} bytes"

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        limit = self._max_body_bytes

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise LimitExceeded(self._too_large, code="body_too_large")
            return message

        return counted

    @staticmethod
    async def _refuse(
        scope: Scope, send: Send, status: int, message: str, code: str, retry: str | None = None
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps(error_body(message, code, status)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if retry is not None:
            headers.append((b"retry-after", retry.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
