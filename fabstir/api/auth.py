"""Bearer tokens bound to one on-chain job, granted to the job's renter for a signed request.

Tokens and used nonces live in memory: a restart forgets them, and renters sign a new request.
A signed request is accepted at most ``max_ttl_s`` before its expiry, which bounds how long a
nonce must be remembered.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fabstir.client.protocol import access_message, recover_signer
from fabstir.domain import ZERO_ADDRESS, Job, JobState
from fabstir.errors import AccessDenied, JobRejected

if TYPE_CHECKING:
    from fabstir.api.schemas import AuthRequest

TOKEN_PREFIX = "fab_"


@dataclass(frozen=True)
class Grant:
    """What a bearer token allows: requests about one job, by its renter, until a time."""

    job_id: int
    renter: str
    expires_at: int


class AccessControl:
    """Check signed access requests against the chain's job record and grant tokens."""

    def __init__(
        self,
        *,
        chain_id: int,
        marketplace: str,
        host: str,
        max_ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._chain_id = chain_id
        self._marketplace = marketplace
        self._host = host
        self._max_ttl_s = max_ttl_s
        self._clock = clock
        self._grants: dict[str, Grant] = {}
        self._nonces: dict[str, int] = {}
        self._lock = threading.Lock()

    def grant(self, request: AuthRequest, job: Job) -> tuple[str, Grant]:
        """Return a new token for ``job`` if ``request`` is its renter's valid, unused signature.

        Raises:
            AccessDenied: expired or malformed signature (``auth_expired``,
                ``invalid_signature``).
            JobRejected: the expiry is too far ahead (``expiry_too_far``); another renter's job
                (``not_job_renter``) or host's (``not_our_job``); the job was refunded or
                cancelled (``job_closed``); the nonce was used before (``nonce_reused``).
        """
        now = int(self._clock())
        if request.expires_at <= now:
            raise AccessDenied("the signed request has expired", code="auth_expired")
        if request.expires_at > now + self._max_ttl_s:
            raise JobRejected(
                f"expires_at may be at most {self._max_ttl_s} s from now",
                code="expiry_too_far",
                param="expires_at",
            )
        if request.host.lower() != self._host.lower():
            raise JobRejected("the request names another host", code="not_our_job", param="host")
        text = access_message(
            self._chain_id,
            self._marketplace,
            request.job_id,
            request.host,
            request.nonce,
            request.expires_at,
        )
        signer = recover_signer(text, request.signature)
        if signer.lower() != job.renter.lower():
            raise JobRejected(
                "the signer is not this job's renter", code="not_job_renter", job_id=job.job_id
            )
        if job.host != ZERO_ADDRESS and job.host.lower() != self._host.lower():
            raise JobRejected("the job belongs to another host", code="not_our_job")
        if job.state in (JobState.REFUNDED, JobState.CANCELLED):
            raise JobRejected(f"the job was {job.state.name.lower()}", code="job_closed")
        with self._lock:
            self._forget_expired(now)
            key = f"{signer.lower()}:{request.nonce.lower()}"
            if key in self._nonces:
                raise JobRejected("this nonce was used before", code="nonce_reused")
            self._nonces[key] = request.expires_at
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            grant = Grant(job.job_id, job.renter, request.expires_at)
            self._grants[token] = grant
        return token, grant

    def check(self, token: str) -> Grant:
        """Return the grant of a bearer token.

        Raises:
            AccessDenied: unknown token (``invalid_token``) or past its expiry
                (``token_expired``).
        """
        with self._lock:
            grant = self._grants.get(token)
        if grant is None:
            raise AccessDenied(
                "unknown bearer token; get one from POST /v1/auth", code="invalid_token"
            )
        if grant.expires_at <= self._clock():
            raise AccessDenied("the bearer token has expired", code="token_expired")
        return grant

    def _forget_expired(self, now: int) -> None:
        self._nonces = {key: at for key, at in self._nonces.items() if at > now}
        self._grants = {token: g for token, g in self._grants.items() if g.expires_at > now}
