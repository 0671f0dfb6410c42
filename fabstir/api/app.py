"""``create_app(settings, services)``: the renter API as a FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from fabstir.api.errors import install_error_handlers
from fabstir.api.limits import RateLimiter, RequestLimits
from fabstir.api.metrics import CountRequests
from fabstir.api.routes import auth, completions, embeddings, health, jobs, models
from fabstir.api.schemas import ErrorResponse
from fabstir.api.services import ApiContext, ApiServices
from fabstir.api.ws import router as ws_router
from fabstir.settings import ApiSettings

ERROR_RESPONSES = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Invalid request"),
        (401, "Missing, invalid or expired credentials"),
        (403, "Not the job's renter or host"),
        (404, "No such job, model or result"),
        (409, "The job is settled, closed or busy"),
        (413, "Request body too large"),
        (429, "Rate limited; see Retry-After"),
        (503, "Busy; see Retry-After"),
    )
}


def create_app(settings: ApiSettings, services: ApiServices) -> FastAPI:
    """Build the API over the node's clients; its in-memory state lives in ``app.state``."""
    app = FastAPI(
        title="Fabstir LLM Node",
        summary="OpenAI-compatible inference bound to on-chain jobs.",
        version="1",
        responses=ERROR_RESPONSES,
    )
    context = ApiContext.build(settings, services)
    app.state.context = context
    install_error_handlers(app)
    for router in (
        auth.router,
        completions.router,
        models.router,
        embeddings.router,
        jobs.router,
        health.router,
        ws_router,
    ):
        app.include_router(router)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        per_ip=RateLimiter(settings.rate_per_ip_per_min),
    )
    app.add_middleware(CountRequests, metrics=context.metrics)
    return app
