"""``GET /health`` (liveness), ``GET /ready`` (model loaded, chain reachable), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from fabstir.api.dependencies import Context
from fabstir.api.services import ApiContext
from fabstir.errors import FabstirError

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Answer while the process serves requests."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Not ready; `checks` says why."}})
async def ready(ctx: Context) -> JSONResponse:
    """Say whether the node can answer jobs now: each check's problem, or null when it passes."""
    checks = await run_in_threadpool(_checks, ctx)
    ok = all(problem is None for problem in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": checks},
        status_code=200 if ok else 503,
    )


def _checks(ctx: ApiContext) -> dict[str, str | None]:
    services = ctx.services
    checks: dict[str, str | None] = {}
    checks["model"] = None if services.engines.loaded_bytes > 0 else "no model loaded yet"
    try:
        services.chain.block_number()
        checks["chain"] = None
    except FabstirError as exc:
        checks["chain"] = f"chain RPC unreachable: {exc.message}"
    return checks


@router.get("/metrics", response_class=Response)
async def metrics(ctx: Context) -> Response:
    """Prometheus text: the API's metrics, and the node's resource gauges when it has them."""
    body = ctx.metrics.render()
    if ctx.services.node_metrics is not None:
        body += ctx.services.node_metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
