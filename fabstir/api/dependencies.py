"""Cross-cutting checks routes declare with ``Depends``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fabstir.api.auth import Grant
from fabstir.api.services import ApiContext
from fabstir.errors import AccessDenied

bearer = HTTPBearer(auto_error=False, description="A token from POST /v1/auth.")


def get_context(request: Request) -> ApiContext:
    return request.app.state.context


Context = Annotated[ApiContext, Depends(get_context)]


def require_grant(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)], ctx: Context
) -> Grant:
    """Return the caller's grant, counting the request against its renter's rate.

    Raises:
        AccessDenied: no bearer token (``missing_token``), or an unknown or expired one.
        LimitExceeded: the renter's rate is used up (``rate_limited``).
    """
    if credentials is None:
        raise AccessDenied(
            "send Authorization: Bearer <token> (get one from POST /v1/auth)",
            code="missing_token",
        )
    grant = ctx.access.check(credentials.credentials)
    ctx.per_renter.hit(grant.renter.lower())
    return grant


Caller = Annotated[Grant, Depends(require_grant)]
