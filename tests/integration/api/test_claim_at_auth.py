"""A posted job is claimed when its renter authenticates: once, only if this host can serve it,
and, left unused, refunded at its deadline like any claimed job that was never finished."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from web3 import Web3

from fabstir import pipeline, reconcile
from fabstir.api import create_app
from fabstir.chain import ChainClient
from fabstir.client import DIRECT_PROMPT_URI
from fabstir.domain import JobState, chat_prompt
from fabstir.errors import JobRejected, ResultIntegrityError
from fabstir.monitoring import CapacityGuard
from fabstir.proofs import BillingProver
from fabstir.settings import HostSettings, MonitoringSettings
from fabstir.storage import ObjectStore, put_content
from tests.integration.api.conftest import MAX_TOKENS, PRICE_PER_TOKEN_WEI, ApiNode, run_pipeline
from tests.integration.api.test_auth_and_bad_input import MESSAGES, auth_body, error_of, post_auth
from tests.integration.api.test_streaming import wait_settled

pytestmark = pytest.mark.integration


@pytest.fixture
def claim_txs(api_node: ApiNode, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The job ids the node sends claim transactions for (each still sent to the chain)."""
    sent: list[int] = []
    chain = api_node.services.chain
    claim = chain.claim_job

    def counted(job_id: int) -> str:
        sent.append(job_id)
        return claim(job_id)

    monkeypatch.setattr(chain, "claim_job", counted)
    yield sent


def test_the_handshake_claims_the_job_once_and_the_answer_is_billed_exactly(
    api_node: ApiNode, claim_txs: list[int]
) -> None:
    chain = api_node.renter.chain
    job_id = api_node.post_chat(MESSAGES)
    assert chain.get_job(job_id).state is JobState.POSTED

    assert post_auth(api_node, auth_body(api_node, job_id)).status_code == 200
    claimed = chain.get_job(job_id)
    assert claimed.state is JobState.CLAIMED and claimed.host == api_node.host.address
    token = post_auth(api_node, auth_body(api_node, job_id)).json()["token"]  # a second handshake
    assert claim_txs == [job_id]

    before = {
        "host": chain.credit_of(api_node.host.address),
        "renter": chain.credit_of(api_node.renter.address),
    }
    text = "".join(api_node.renter.chat(api_node.url, token, api_node.model.id, MESSAGES))
    wait_settled(api_node, job_id)
    settled = chain.get_job(job_id)
    assert text and 0 < settled.tokens_used <= MAX_TOKENS
    assert claim_txs == [job_id], "the flow's claim step found the job ours"
    paid_wei = settled.tokens_used * PRICE_PER_TOKEN_WEI
    fee_wei = paid_wei * api_node.host.fee_bps() // 10_000
    assert chain.credit_of(api_node.host.address) - before["host"] == paid_wei - fee_wei
    assert chain.credit_of(api_node.renter.address) - before["renter"] == (
        settled.deposit_wei - paid_wei
    )


def test_a_job_priced_below_ours_is_refused_and_left_posted(
    api_node: ApiNode, claim_txs: list[int]
) -> None:
    cheap = dataclasses.replace(api_node.offer(), price_per_token=PRICE_PER_TOKEN_WEI - 1)
    job_id = api_node.renter.post_chat_job(cheap, MESSAGES, max_tokens=MAX_TOKENS)

    response = post_auth(api_node, auth_body(api_node, job_id))

    assert response.status_code == 400 and error_of(response)["code"] == "price_too_low"
    assert api_node.renter.chain.get_job(job_id).state is JobState.POSTED and claim_txs == []
    # The refusal spent nothing: the renter can still cancel and get the deposit back.
    api_node.renter.chain.cancel_job(job_id)
    assert api_node.renter.chain.get_job(job_id).state is JobState.CANCELLED


def test_a_host_without_capacity_refuses_the_job_with_retry_after(
    api_node: ApiNode, claim_txs: list[int]
) -> None:
    no_headroom = CapacityGuard(
        MonitoringSettings(min_free_memory_bytes=2**60), api_node.services.proofs_dir
    )
    services = dataclasses.replace(api_node.services, capacity=no_headroom)
    job_id = api_node.post_chat(MESSAGES)

    with TestClient(create_app(api_node.settings, services)) as client:
        response = client.post("/v1/auth", json=auth_body(api_node, job_id))

    assert response.status_code == 503 and response.headers["Retry-After"]
    assert error_of(response)["code"] == "no_capacity"
    assert api_node.renter.chain.get_job(job_id).state is JobState.POSTED and claim_txs == []


def test_a_renter_holding_its_share_of_unasked_jobs_gets_429_and_the_job_stays_posted(
    api_node: ApiNode, claim_txs: list[int]
) -> None:
    settings = api_node.settings.model_copy(update={"max_claims_per_renter": 1})
    held, refused = api_node.post_chat(MESSAGES), api_node.post_chat(MESSAGES)

    with TestClient(create_app(settings, api_node.services)) as client:
        assert client.post("/v1/auth", json=auth_body(api_node, held)).status_code == 200
        response = client.post("/v1/auth", json=auth_body(api_node, refused))

    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert error_of(response)["code"] == "too_many_claims"
    assert api_node.renter.chain.get_job(refused).state is JobState.POSTED
    assert claim_txs == [held]


def test_a_job_claimed_at_the_handshake_but_never_used_is_refunded_at_its_deadline(
    api_node: ApiNode,
) -> None:
    chain = api_node.renter.chain
    # A prompt no other job has sent: prompts are stored by content, so another job's request
    # with the same text would store this one's too (reconcile then runs it, as any claimed job).
    unsent = [{"role": "user", "content": "a question its renter never sends"}]
    job_id = api_node.renter.post_chat_job(
        api_node.offer(), unsent, max_tokens=MAX_TOKENS, ttl_s=120
    )
    api_node.renter.authenticate(api_node.url, job_id)
    job = chain.get_job(job_id)
    assert job.state is JobState.CLAIMED
    eligibility = dataclasses.replace(
        reconcile.host_eligibility(
            api_node.host,
            HostSettings(price_per_token_wei=PRICE_PER_TOKEN_WEI, models=[api_node.model]),
        ),
        direct_prompt_uri=DIRECT_PROMPT_URI,
    )
    store: ObjectStore = api_node.services.store
    # Until its renter's request brings the prompt, no run is started for it (one would fail).
    assert job_id not in reconcile.open_jobs(api_node.host, store, eligibility)

    _advance(api_node.host, 121)
    assert job_id not in reconcile.open_jobs(api_node.host, store, eligibility)
    renter_before = chain.credit_of(api_node.renter.address)
    host_before = chain.credit_of(api_node.host.address)
    chain.refund_expired(job_id)
    assert chain.get_job(job_id).state is JobState.REFUNDED
    assert chain.credit_of(api_node.renter.address) - renter_before == job.deposit_wei
    assert chain.credit_of(api_node.host.address) == host_before
    with pytest.raises(JobRejected) as refused:  # and takes no new handshake
        api_node.renter.authenticate(api_node.url, job_id)
    assert refused.value.code == "job_closed"


def _advance(chain: ChainClient, seconds: int) -> None:
    w3 = Web3(Web3.HTTPProvider(chain.deployment.rpc_url))
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


def test_a_job_settled_between_the_handshake_and_the_request_gets_a_clear_error(
    api_node: ApiNode, api_prover_dir: Path
) -> None:
    job_id = api_node.post_chat(MESSAGES)
    token = api_node.renter.authenticate(api_node.url, job_id)
    # Another run of the job (as a crash recovery would start) answers and settles it first.
    put_content(api_node.services.store, chat_prompt(MESSAGES), "prompts")
    run_pipeline(api_node.services, BillingProver(api_prover_dir), None, job_id)
    assert api_node.renter.chain.get_job(job_id).state is JobState.SETTLED

    response = httpx.post(
        api_node.url + "/v1/chat/completions",
        json={"model": api_node.model.id, "messages": MESSAGES},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 409 and error_of(response)["code"] == "job_settled"
    assert api_node.services.streams.get(job_id) is None


def test_claiming_an_unknown_job_for_a_renter_is_refused(api_node: ApiNode) -> None:
    services = api_node.services
    with pytest.raises(JobRejected) as unknown:
        pipeline.claim_for_renter(
            services.chain, services.catalog, 10**9, services.price_per_token_wei
        )
    assert unknown.value.code == "unknown_job"


def test_a_run_started_at_the_handshake_takes_its_prompt_from_the_request(
    api_node: ApiNode, claim_txs: list[int]
) -> None:
    services = api_node.services
    job_id = api_node.post_chat(MESSAGES)
    api_node.renter.authenticate(api_node.url, job_id)

    claimed = pipeline.claim_requested_job(
        services.chain, services.catalog, job_id, services.price_per_token_wei
    )
    assert claimed.claim_tx is None, "claimed at the handshake"
    assert claimed.prompt is None, "no request yet"
    asked_at = time.time()
    model = pipeline.fetch_model(services.catalog, claimed)
    asked = pipeline.take_request(
        None, model, claimed, None, lambda: (chat_prompt(MESSAGES), asked_at)
    )

    assert asked is not None
    with_prompt, cached = asked
    assert with_prompt.prompt == chat_prompt(MESSAGES).decode() and cached is None
    # The answer's clock starts at the request; its claim time is the wait for this step.
    assert with_prompt.claim_started_at == asked_at
    assert with_prompt.claim_ms is not None and 0 <= with_prompt.claim_ms < 60_000
    assert claim_txs == [job_id]


def test_a_run_started_at_the_handshake_ends_without_a_request_and_refuses_a_wrong_prompt(
    api_node: ApiNode,
) -> None:
    services = api_node.services
    job_id = api_node.post_chat(MESSAGES)
    api_node.renter.authenticate(api_node.url, job_id)
    claimed = pipeline.claim_requested_job(
        services.chain, services.catalog, job_id, services.price_per_token_wei
    )
    model = pipeline.fetch_model(services.catalog, claimed)

    assert pipeline.take_request(None, model, claimed, None, lambda: None) is None
    wrong = chat_prompt([{"role": "user", "content": "another question"}])
    with pytest.raises(ResultIntegrityError):
        pipeline.take_request(None, model, claimed, None, lambda: (wrong, time.time()))
    assert api_node.renter.chain.get_job(job_id).state is JobState.CLAIMED


def test_a_run_started_at_the_handshake_refuses_a_closed_job(api_node: ApiNode) -> None:
    services = api_node.services
    job_id = api_node.post_chat(MESSAGES)
    api_node.renter.cancel(job_id)

    with pytest.raises(JobRejected) as refused:
        pipeline.claim_requested_job(
            services.chain, services.catalog, job_id, services.price_per_token_wei
        )
    assert refused.value.code == "job_closed"
