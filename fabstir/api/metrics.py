"""Prometheus metrics of the API: requests, latency, tokens, cache hits, jobs and earnings.

They live in a registry of their own; ``/metrics`` serves it together with the node's resource
gauges (``fabstir.monitoring.NodeMetrics``) when the node has them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fabstir.domain import InferenceResult, Receipt, SettlementQueued

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ApiMetrics:
    """Counters the API updates as it serves."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "fabstir_api_requests", "HTTP requests answered.", ("route", "status"), registry=r
        )
        self.ttft = Histogram(
            "fabstir_api_time_to_first_token_seconds",
            "From an answer's request to its first token.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.decode = Histogram(
            "fabstir_api_decode_seconds",
            "From an answer's first token to its last.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.tokens = Counter(
            "fabstir_api_tokens",
            "Prompt (in) and completion (out) tokens.",
            ("direction",),
            registry=r,
        )
        self.cache_hits = Counter(
            "fabstir_api_cache_hits", "Answers served from the cache.", registry=r
        )
        self.jobs = Gauge(
            "fabstir_api_jobs",
            "Jobs started through the API, by state (running, settled, queued, failed).",
            ("state",),
            registry=r,
        )
        self.earnings = Counter(
            "fabstir_api_earnings_base_units",
            "Paid to this host for jobs started through the API, in base units of the token.",
            ("token",),
            registry=r,
        )
        self.streams = Gauge("fabstir_api_open_streams", "Answers in progress.", registry=r)
        for state in ("running", "settled", "queued", "failed"):
            self.jobs.labels(state)

    def observe_answer(self, result: InferenceResult) -> None:
        self.tokens.labels("in").inc(result.prompt_tokens)
        self.tokens.labels("out").inc(result.completion_tokens)
        if result.cache_hit:
            self.cache_hits.inc()

    def job_started(self) -> None:
        self.jobs.labels("running").inc()

    def job_ended(self, receipt: Receipt | SettlementQueued | None) -> None:
        self.jobs.labels("running").dec()
        if receipt is None:
            self.jobs.labels("failed").inc()
            return
        if isinstance(receipt, SettlementQueued):
            self.jobs.labels("queued").inc()  # earnings count once the batch settles
            return
        self.jobs.labels("settled").inc()
        self.earnings.labels(receipt.payment_token).inc(receipt.paid_to_host_wei)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CountRequests:
    """ASGI middleware: count each HTTP request by route template and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self._metrics.requests.labels(path, str(status)).inc()
