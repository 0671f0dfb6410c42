"""The renter's side: find hosts, escrow a job, get a token, stream the answer, check and close it.

Chat requests go to a host's OpenAI-compatible API (any OpenAI client works with the token as its
API key; :meth:`RenterClient.chat` is a dependency-free one); everything about money happens on
chain through :class:`fabstir.chain.ChainClient`.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from web3 import Web3

from fabstir.chain import ChainClient, Deployment, Rating, load_artifact, model_id_of
from fabstir.client.protocol import sign_access
from fabstir.domain import Job, chat_prompt
from fabstir.errors import (
    AccessDenied,
    FabstirError,
    JobRejected,
    LimitExceeded,
    ResultIntegrityError,
    TransientError,
)
from fabstir.proofs import BillingProver, VerifiedDelivery, verify_delivery
from fabstir.storage import ObjectStore, ResultRecord, decode_record, sha256_hex

log = logging.getLogger(__name__)

DIRECT_PROMPT_URI = "fabstir:direct"
"""Prompt URI of a job whose prompt reaches the host through its API, not through storage."""


@dataclass(frozen=True)
class HostOffer:
    """A registered, active host's price for one model in one payment token."""

    host: str
    api_url: str
    region: str
    model: str
    price_per_token: int
    token: str
    stake: int
    rating: Rating

    @property
    def mean_rating(self) -> float | None:
        return self.rating.score_sum / self.rating.count if self.rating.count else None


@dataclass(frozen=True)
class Delivery:
    """A job's result, checked against the chain: its hash, its billing proof and its record."""

    job: Job
    record: ResultRecord
    proof: VerifiedDelivery


class RenterClient:
    """Everything a renter does, as the account of ``private_key``; ``prover`` checks the
    billing proofs of deliveries (its SRS must be the one the chain's verifiers were built on)."""

    def __init__(
        self,
        deployment: Deployment,
        private_key: str,
        *,
        prover: BillingProver,
        http: httpx.Client | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        """Connect to the chain of ``deployment``.

        Raises:
            ChainError, TransientError: as ``ChainClient`` does.
        """
        self.chain = ChainClient(deployment, private_key)
        self._key = private_key
        self._prover = prover
        self._http = http or httpx.Client(timeout=timeout_s)

    @property
    def address(self) -> str:
        return self.chain.address

    # Finding hosts -------------------------------------------------------------------------------

    def find_hosts(
        self,
        model: str,
        *,
        token: str = "ETH",
        region: str | None = None,
        max_price: int | None = None,
        min_rating: float | None = None,
    ) -> list[HostOffer]:
        """Return the active hosts offering ``model`` in ``token``, cheapest first (then best
        rated), optionally only in ``region``, at most ``max_price``, rated at least
        ``min_rating``.

        Raises:
            ValueError: unknown payment token symbol.
        """
        token_address = self.chain.token_address(token)
        offers = []
        for address in self._registered_hosts():
            record = self.chain.get_host(address)
            if not record.active or (region is not None and record.region != region):
                continue
            price = self.chain.price_of(address, model, token_address)
            if price == 0 or (max_price is not None and price > max_price):
                continue
            offer = HostOffer(
                address,
                record.api_url,
                record.region,
                model,
                price,
                token_address,
                record.stake,
                record.rating,
            )
            rating = offer.mean_rating
            if min_rating is not None and (rating is None or rating < min_rating):
                continue
            offers.append(offer)
        return sorted(offers, key=lambda o: (o.price_per_token, -(o.mean_rating or 0.0)))

    def _registered_hosts(self) -> list[str]:
        deployment = self.chain.deployment
        w3 = Web3(Web3.HTTPProvider(deployment.rpc_url))
        registry = w3.eth.contract(
            address=deployment.node_registry, abi=load_artifact("NodeRegistry").abi
        )
        events = registry.events.NodeRegistered().get_logs(from_block=0)
        return list(dict.fromkeys(event["args"]["host"] for event in events))

    # Jobs ----------------------------------------------------------------------------------------

    def post_chat_job(
        self,
        offer: HostOffer,
        messages: Sequence[Mapping[str, str]],
        *,
        max_tokens: int,
        ttl_s: int = 3600,
        prompt_uri: str = DIRECT_PROMPT_URI,
    ) -> int:
        """Escrow ``max_tokens × price`` for a chat only ``offer.host`` may answer; return its id.

        The job commits to the chat's prompt document (``chat_prompt(messages)``); send the
        same messages to the host's API. Pays in ``offer.token`` (ERC-20s are approved here).

        Raises:
            ContractRevert: the marketplace refused the job (e.g. ``InsufficientBalance``).
        """
        return self.post_job(
            offer, chat_prompt(messages), max_tokens=max_tokens, ttl_s=ttl_s, prompt_uri=prompt_uri
        )

    def post_job(
        self,
        offer: HostOffer,
        document: bytes,
        *,
        max_tokens: int,
        ttl_s: int = 3600,
        prompt_uri: str = DIRECT_PROMPT_URI,
    ) -> int:
        """Escrow a job for a prompt document (plain UTF-8 text, or ``chat_prompt``'s JSON).

        Raises:
            ValueError: ``max_tokens`` or ``ttl_s`` is not positive.
            ContractRevert: the marketplace refused the job.
        """
        if max_tokens <= 0 or ttl_s <= 0:
            raise ValueError("max_tokens and ttl_s must be positive")
        return self.chain.post_job(
            offer.model,
            sha256_hex(document),
            prompt_uri,
            max_tokens,
            offer.price_per_token,
            max_tokens * offer.price_per_token,
            self.chain.chain_time() + ttl_s,
            payment_token=offer.token,
            host=offer.host,
        )

    def authenticate(self, api_url: str, job_id: int, *, ttl_s: int = 600) -> str:
        """Sign an access request for ``job_id`` and trade it for the host's bearer token.

        Raises:
            AccessDenied, JobRejected, LimitExceeded, TransientError: the host refused (its
                error code is kept).
        """
        job = self.chain.get_job(job_id)
        deployment = self.chain.deployment
        request = sign_access(
            self._key,
            chain_id=deployment.chain_id,
            marketplace=deployment.job_marketplace,
            job_id=job_id,
            host=job.host,
            expires_at=int(time.time()) + ttl_s,
        )
        body = {
            "job_id": request.job_id,
            "host": request.host,
            "nonce": request.nonce,
            "expires_at": request.expires_at,
            "signature": request.signature,
        }
        return self._request("POST", api_url, "/v1/auth", json=body)["token"]

    def chat(
        self,
        api_url: str,
        token: str,
        model: str,
        messages: Sequence[Mapping[str, str]],
        **params: Any,
    ) -> Iterator[str]:
        """Stream the answer to a job's chat, yielding text as the host generates it.

        Raises:
            FabstirError: the host refused or failed (its error code is kept).
        """
        body = {"model": model, "messages": list(messages), "stream": True, **params}
        headers = {"Authorization": f"Bearer {token}"}
        url = api_url.rstrip("/") + "/v1/chat/completions"
        with self._http.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                response.read()
                raise _error_of(response)
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise _from_body(chunk, 500)
                for choice in chunk["choices"]:
                    if choice["delta"].get("content"):
                        yield choice["delta"]["content"]

    def fetch_result(self, api_url: str, token: str, job_id: int) -> Delivery:
        """Fetch the job's result from its host and verify it (see :meth:`verify_result`).

        Raises:
            JobRejected: the job is not settled yet (``code="job_not_settled"``).
            ResultIntegrityError, ProofError: as :meth:`verify_result`.
        """
        body = self._request(
            "GET",
            api_url,
            f"/v1/jobs/{job_id}/result",
            headers={"Authorization": f"Bearer {token}"},
        )
        return self.verify_result(job_id, base64.b64decode(body["record_cbor"]))

    def read_result(self, store: ObjectStore, job_id: int) -> Delivery:
        """Read a settled job's result from storage the renter shares with the host, at the URI
        the chain records, and verify it (see :meth:`verify_result`).

        Raises:
            JobRejected: the job is not settled yet (``code="job_not_settled"``).
            ObjectMissing: nothing is stored at the job's result URI.
            ResultIntegrityError, ProofError: as :meth:`verify_result`.
        """
        result_uri = self.chain.result_uri(job_id)
        return self.verify_result(job_id, store.get(store.key_of(result_uri)))

    def verify_result(self, job_id: int, record_bytes: bytes) -> Delivery:
        """Verify a result record as the job's renter: it hashes to the settled job's result
        hash, the billing proof the settlement carried verifies for the job records on chain, and
        the record names this job's id, model, prompt and billed token count.

        Raises:
            JobRejected: the job is not settled (``code="job_not_settled"``) or unknown.
            ResultIntegrityError: the bytes do not hash to the chain's result hash, or the
                record describes another job, model, prompt or token count.
            ProofError: the settlement's billing proof does not verify (``proof_rejected``).
        """
        proof = verify_delivery(self.chain, self._prover, job_id, record_bytes)
        job = self.chain.get_job(job_id)
        record = decode_record(record_bytes)
        if (
            record.job_id != job_id
            or record.prompt_hash.lower() != job.prompt_hash.lower()
            or record.completion_tokens != job.tokens_used
            or model_id_of(record.model_id) != job.model_id.lower()
        ):
            raise ResultIntegrityError("result record does not describe this job", job_id=job_id)
        return Delivery(job, record, proof)

    def fetch_proof(self, api_url: str, token: str, job_id: int) -> dict[str, Any]:
        """Return the job's billing proof as the host's prover wrote it."""
        return self._request(
            "GET", api_url, f"/v1/jobs/{job_id}/proof", headers={"Authorization": f"Bearer {token}"}
        )

    def rate(self, job_id: int, score: int) -> str:
        """Rate the host of a settled job 1-5, once; return the transaction hash."""
        return self.chain.rate_host(job_id, score)

    def refund(self, job_id: int) -> str:
        """Take back the deposit of an expired, unsettled job (credited; see ``withdraw``)."""
        return self.chain.refund_expired(job_id)

    def cancel(self, job_id: int) -> str:
        """Cancel a job no host has claimed yet (credited; see ``withdraw``)."""
        return self.chain.cancel_job(job_id)

    def withdraw(self, token: str = "ETH") -> int:
        """Withdraw the marketplace's credits (refunds) in ``token``; return the amount."""
        withdrawal = self.chain.withdraw(self.chain.token_address(token))
        return 0 if withdrawal is None else withdrawal.amount

    def _request(self, method: str, api_url: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, api_url.rstrip("/") + path, **kwargs)
        except httpx.TransportError as exc:
            raise TransientError("host unreachable", code="host_unreachable", url=api_url) from exc
        if response.status_code != 200:
            raise _error_of(response)
        return response.json()


_ERROR_TYPES: tuple[tuple[range, type[FabstirError]], ...] = (
    (range(401, 402), AccessDenied),
    (range(429, 430), LimitExceeded),
    (range(400, 500), JobRejected),
    (range(500, 600), TransientError),
)


def _error_of(response: httpx.Response) -> FabstirError:
    try:
        body = response.json()
    except ValueError:
        body = {"error": {"message": response.text[:200], "code": "http_error"}}
    return _from_body(body, response.status_code)


def _from_body(body: dict[str, Any], status: int) -> FabstirError:
    error = body.get("error") or {}
    kind = next((k for codes, k in _ERROR_TYPES if status in codes), FabstirError)
    return kind(
        str(error.get("message", "host error")),
        code=str(error.get("code", "http_error")),
        status=status,
    )
