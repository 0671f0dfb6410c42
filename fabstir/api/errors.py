"""Every error the API returns, in OpenAI's shape: ``{"error": {message, type, param, code}}``.

The status comes from the error's stable ``code`` where one is listed, else from its type; never
from message text.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from fabstir.errors import (
    AccessDenied,
    ChainError,
    ConfigError,
    FabstirError,
    IntegrityError,
    JobRejected,
    LimitExceeded,
    ObjectMissing,
    TransientError,
)

log = logging.getLogger(__name__)

STATUS_BY_CODE = {
    "not_job_renter": 403,
    "not_our_job": 403,
    "claimed_by_other": 403,
    "token_for_other_job": 403,
    "proof_not_ready": 404,
    "unknown_job": 404,
    "unknown_model": 404,
    "model_not_served": 404,
    "result_not_ready": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "job_settled": 409,
    "job_closed": 409,
    "job_expired": 409,
    "job_busy": 409,
    "nonce_reused": 409,
    "body_too_large": 413,
    "no_capacity": 503,
    "too_many_streams": 503,
    "stream_timeout": 504,
}
STATUS_BY_TYPE: tuple[tuple[type[FabstirError], int], ...] = (
    (AccessDenied, 401),
    (LimitExceeded, 429),
    (JobRejected, 400),
    (ObjectMissing, 404),
    (TransientError, 503),
    (ChainError, 502),
    (IntegrityError, 500),
    (ConfigError, 500),
)
OPENAI_TYPE_BY_STATUS = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def status_of(error: FabstirError) -> int:
    if error.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[error.code]
    for kind, status in STATUS_BY_TYPE:
        if isinstance(error, kind):
            return status
    return 500


def error_body(
    message: str, code: str, status: int, param: str | None = None
) -> dict[str, dict[str, Any]]:
    kind = OPENAI_TYPE_BY_STATUS.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(error: FabstirError) -> JSONResponse:
    """Return the JSON response for ``error``, with Retry-After where waiting helps."""
    status = status_of(error)
    param = error.context.get("param")
    headers = {}
    retry_after_s = error.context.get("retry_after_s")
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, int(retry_after_s + 0.999)))
    elif status == 503:
        headers["Retry-After"] = "1"
    if status >= 500:
        log.warning("request failed", extra={"code": error.code, "status": status})
    return JSONResponse(
        error_body(error.message, error.code, status, param), status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure of every route through one place."""

    @app.exception_handler(FabstirError)
    async def fabstir_error(request: Request, exc: FabstirError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = ".".join(location) or None
        code = "invalid_json" if first.get("type") == "json_invalid" else "invalid_request"
        message = first.get("msg", "invalid request")
        if param:
            message = f"{param}: {message}"
        return JSONResponse(error_body(message, code, 400, param), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(str(exc.detail), code, exc.status_code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"path": request.url.path})
        return JSONResponse(
            error_body("internal error; the node logged it", "internal_error", 500),
            status_code=500,
        )
