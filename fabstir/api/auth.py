"""Bearer tokens bound to one on-chain job, granted to the job's renter for a signed request.

A signed request is accepted at most ``max_ttl_s`` before its expiry, which bounds how long a
nonce must be remembered. With a journal file, used nonces and granted tokens (as SHA-256
digests, never the tokens) are appended to it and read back at start, so a restart neither lets
a signed request be replayed nor logs renters out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fabstir.client.protocol import access_message, recover_signer
from fabstir.domain import ZERO_ADDRESS, Job, JobState
from fabstir.errors import AccessDenied, JobRejected

if TYPE_CHECKING:
    from fabstir.api.schemas import AuthRequest

log = logging.getLogger(__name__)

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
        journal: Path | None = None,
    ) -> None:
        self._chain_id = chain_id
        self._marketplace = marketplace
        self._host = host
        self._max_ttl_s = max_ttl_s
        self._clock = clock
        # Keyed by the token's digest, the form the journal keeps.
        self._grants: dict[str, Grant] = {}
        self._nonces: dict[str, int] = {}
        self._lock = threading.Lock()
        self._journal = journal
        self._journal_lines = 0
        if journal is not None:
            self._load_journal(journal)

    def verify(self, request: AuthRequest, job: Job) -> str:
        """Return the signer if ``request`` is ``job``'s renter's valid signature with an unused
        nonce, spending nothing (so the job can be claimed before a token is granted).

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
            self._check_nonce(_nonce_key(signer, request))
        return signer

    def grant(self, request: AuthRequest, job: Job) -> tuple[str, Grant]:
        """Return a new token for ``job`` if ``request`` is its renter's valid, unused signature.

        Raises:
            AccessDenied, JobRejected: as :meth:`verify`.
        """
        key = _nonce_key(self.verify(request, job), request)
        with self._lock:
            self._forget_expired(int(self._clock()))
            self._check_nonce(key)  # again: a twin request may have spent it meanwhile
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            grant = Grant(job.job_id, job.renter, request.expires_at)
            # Journal first: a nonce is spent only once it would survive a restart.
            self._append({"nonce": key, "expires_at": request.expires_at})
            self._append({"token_sha256": _digest(token), **asdict(grant)})
            self._nonces[key] = request.expires_at
            self._grants[_digest(token)] = grant
        return token, grant

    def _check_nonce(self, key: str) -> None:
        if key in self._nonces:
            raise JobRejected("this nonce was used before", code="nonce_reused")

    def check(self, token: str) -> Grant:
        """Return the grant of a bearer token.

        Raises:
            AccessDenied: unknown token (``invalid_token``) or past its expiry
                (``token_expired``).
        """
        with self._lock:
            grant = self._grants.get(_digest(token))
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
        live = len(self._nonces) + len(self._grants)
        if self._journal is not None and self._journal_lines > 2 * live + 1000:
            self._rewrite_journal(self._journal)

    def _append(self, entry: dict[str, object]) -> None:
        if self._journal is None:
            return
        with self._journal.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, separators=(",", ":")) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self._journal_lines += 1

    def _load_journal(self, journal: Path) -> None:
        now = int(self._clock())
        lines = journal.read_text(encoding="utf-8").splitlines() if journal.exists() else []
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                if "nonce" in entry:
                    self._nonces[str(entry["nonce"])] = int(entry["expires_at"])
                else:
                    grant = Grant(
                        int(entry["job_id"]), str(entry["renter"]), int(entry["expires_at"])
                    )
                    self._grants[str(entry["token_sha256"])] = grant
            except (ValueError, KeyError, TypeError):
                # A crash can tear the last line; what it named was never handed out.
                log.warning("unreadable access journal line skipped", extra={"line": number})
        self._nonces = {key: at for key, at in self._nonces.items() if at > now}
        self._grants = {token: g for token, g in self._grants.items() if g.expires_at > now}
        self._rewrite_journal(journal)

    def _rewrite_journal(self, journal: Path) -> None:
        """Replace the journal with the live entries only, atomically."""
        journal.parent.mkdir(parents=True, exist_ok=True)
        entries = [{"nonce": key, "expires_at": at} for key, at in self._nonces.items()]
        entries += [{"token_sha256": key, **asdict(g)} for key, g in self._grants.items()]
        partial = journal.with_name(journal.name + ".partial")
        with partial.open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in entries)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(journal)
        self._journal_lines = len(entries)


def _nonce_key(signer: str, request: AuthRequest) -> str:
    return f"{signer.lower()}:{request.nonce.lower()}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
