"""A paid API request runs the job's real inference-job flow in the node's process.

The API is built as `fabstir-node serve` builds it (``build_api``): the renter's handshake starts
the Prefect flow of its job, which waits for the request; its infer task finds the request's
stream and publishes tokens to it as llama.cpp generates them; store, prove and settle finish
after the stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from fabstir.chain import ChainClient
from fabstir.client import RenterClient
from fabstir.commands.api import build_api
from fabstir.domain import JobState
from fabstir.monitoring import JobQuality, QualityLog
from fabstir.proofs import BillingProver
from fabstir.settings import ANVIL_KEYS, load_settings
from tests.e2e.conftest import PRICE_PER_TOKEN_WEI, Node, run_states_since
from tests.support.slow_generation import hold_generation_until_cancelled

pytestmark = pytest.mark.e2e

# The tiny model answers this greedily with hundreds of tokens and no end token.
LONG_PROMPT = "on sun sat"


@pytest.fixture
def api_url(node: Node, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("FABSTIR_API__PORT", "0")
    yield from _serve()


def _serve() -> Iterator[str]:
    server = build_api(load_settings())
    server.start()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            try:
                if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield server.url
    finally:
        server.stop()
        thread.join(timeout=30)


@pytest.fixture
def renter(node: Node, prover_dir: Path) -> RenterClient:
    return RenterClient(node.deployment, ANVIL_KEYS[2], prover=BillingProver(prover_dir))


def _credits(node: Node, chain: ChainClient) -> dict[str, int]:
    return {
        "host": chain.credit_of(node.host.address),
        "renter": chain.credit_of(node.renter.address),
        "treasury": chain.credit_of(node.host.treasury()),
        "market": chain.balance_of(node.deployment.job_marketplace),
    }


def _wait_settled(chain: ChainClient, job_id: int) -> None:
    for _ in range(1200):
        if chain.get_job(job_id).state is JobState.SETTLED:
            return
        time.sleep(0.1)
    raise AssertionError("job did not settle")


def test_an_openai_stream_runs_the_jobs_flow_and_bills_the_tokens_streamed(
    node: Node, api_url: str, renter: RenterClient
) -> None:
    (offer,) = renter.find_hosts(node.model.id)
    messages = [{"role": "user", "content": "the cat sat on"}]
    job_id = renter.post_chat_job(offer, messages, max_tokens=12)
    since = datetime.now(UTC)
    deposit = renter.chain.get_job(job_id).deposit_wei
    client = OpenAI(
        base_url=api_url + "/v1", api_key=renter.authenticate(api_url, job_id), max_retries=0
    )
    before = _credits(node, renter.chain)

    stream = client.chat.completions.create(
        model=node.model.id,
        messages=messages,
        stream=True,
        max_tokens=12,
        stream_options={"include_usage": True},
    )
    chunks, state_at_first_token = [], None
    for chunk in stream:
        chunks.append(chunk)
        if state_at_first_token is None and chunk.choices and chunk.choices[0].delta.content:
            state_at_first_token = renter.chain.get_job(job_id).state

    # Tokens arrive while the flow is still at its infer step: claimed, not yet settled.
    assert state_at_first_token is JobState.CLAIMED
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 12 and text
    _wait_settled(renter.chain, job_id)
    assert run_states_since(job_id, since) == ["COMPLETED"]
    delivery = renter.fetch_result(api_url, renter.authenticate(api_url, job_id), job_id)
    assert delivery.record.output == text
    job = renter.chain.get_job(job_id)
    assert job.tokens_used == usage.completion_tokens
    payment = job.tokens_used * PRICE_PER_TOKEN_WEI
    fee = payment * node.host.fee_bps() // 10_000
    after = _credits(node, renter.chain)
    assert after["host"] - before["host"] == payment - fee
    assert after["treasury"] - before["treasury"] == fee
    assert after["renter"] - before["renter"] == deposit - payment
    assert after["market"] == before["market"]


def test_leaving_mid_stream_stops_the_flows_generation_and_bills_what_was_sent(
    node: Node, api_url: str, renter: RenterClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_generation_until_cancelled(monkeypatch, after_pieces=16)
    (offer,) = renter.find_hosts(node.model.id)
    messages = [{"role": "user", "content": LONG_PROMPT}]
    job_id = renter.post_chat_job(offer, messages, max_tokens=400)
    client = OpenAI(
        base_url=api_url + "/v1", api_key=renter.authenticate(api_url, job_id), max_retries=0
    )
    before = _credits(node, renter.chain)

    stream = client.chat.completions.create(model=node.model.id, messages=messages, stream=True)
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if len(received) >= 8:
            break
    stream.close()

    _wait_settled(renter.chain, job_id)
    job = renter.chain.get_job(job_id)
    assert 0 < job.tokens_used < 400
    delivery = renter.fetch_result(api_url, renter.authenticate(api_url, job_id), job_id)
    assert delivery.record.output.startswith(received)
    paid = job.tokens_used * PRICE_PER_TOKEN_WEI
    after = _credits(node, renter.chain)
    assert after["renter"] - before["renter"] == 400 * PRICE_PER_TOKEN_WEI - paid
    assert (after["host"] - before["host"]) + (after["treasury"] - before["treasury"]) == paid


def test_the_flow_started_at_the_handshake_answers_the_request_or_ends_when_none_comes(
    node: Node, renter: RenterClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FABSTIR_API__PORT", "0")
    monkeypatch.setenv("FABSTIR_API__REQUEST_WAIT_S", "2")
    (offer,) = renter.find_hosts(node.model.id)
    messages = [{"role": "user", "content": "the cat sat on"}]
    served = _serve()
    api_url = next(served)
    try:
        # A renter who asks: the run started at the handshake is the one that answers.
        asked = renter.post_chat_job(offer, messages, max_tokens=8)
        since = datetime.now(UTC)
        client = OpenAI(
            base_url=api_url + "/v1", api_key=renter.authenticate(api_url, asked), max_retries=0
        )
        assert run_states_since(asked, since, timeout_s=0) == ["RUNNING"], "waits for the request"
        reply = client.chat.completions.create(model=node.model.id, messages=messages, max_tokens=8)
        assert reply.choices[0].message.content
        _wait_settled(renter.chain, asked)
        assert run_states_since(asked, since) == ["COMPLETED"]

        # A renter who asks only after the wait: that run ends, the request starts another.
        late = renter.post_chat_job(offer, messages, max_tokens=8)
        since = datetime.now(UTC)
        deposit = renter.chain.get_job(late).deposit_wei
        before = _credits(node, renter.chain)
        client = OpenAI(
            base_url=api_url + "/v1", api_key=renter.authenticate(api_url, late), max_retries=0
        )
        assert run_states_since(late, since) == ["COMPLETED"], "ended after 2 s"
        assert renter.chain.get_job(late).state is JobState.CLAIMED
        reply = client.chat.completions.create(model=node.model.id, messages=messages, max_tokens=8)
        _wait_settled(renter.chain, late)
        assert run_states_since(late, since) == ["COMPLETED", "COMPLETED"]
        job = renter.chain.get_job(late)
        assert reply.usage is not None and job.tokens_used == reply.usage.completion_tokens
        payment = job.tokens_used * PRICE_PER_TOKEN_WEI
        after = _credits(node, renter.chain)
        assert after["renter"] - before["renter"] == deposit - payment
        assert (after["host"] - before["host"]) + (
            after["treasury"] - before["treasury"]
        ) == payment
    finally:
        served.close()


def test_the_flow_started_at_the_handshake_looks_the_request_up_in_the_cache(
    node: Node, renter: RenterClient, api_url: str
) -> None:
    (offer,) = renter.find_hosts(node.model.id)
    messages = [{"role": "user", "content": "the dog sat on"}]
    answers, asked, replied = [], {}, {}
    for _ in range(2):
        job_id = renter.post_chat_job(offer, messages, max_tokens=8)
        since = datetime.now(UTC)
        token = renter.authenticate(api_url, job_id)
        client = OpenAI(base_url=api_url + "/v1", api_key=token, max_retries=0)
        asked[job_id] = time.time()
        reply = client.chat.completions.create(model=node.model.id, messages=messages, max_tokens=8)
        replied[job_id] = time.time()
        answers.append(reply.choices[0].message.content)
        _wait_settled(renter.chain, job_id)
        assert run_states_since(job_id, since) == ["COMPLETED"], "the run of the handshake"
    rows = _quality_rows(node, set(asked))

    assert answers[0] and answers[0] == answers[1]
    assert [rows[job_id].cache_hit for job_id in asked] == [False, True]
    for job_id, asked_at in asked.items():
        # The answer's clock starts at the request, not at the handshake that started the run.
        assert asked_at <= rows[job_id].started_at <= replied[job_id]


def _quality_rows(node: Node, job_ids: set[int]) -> dict[int, JobQuality]:
    # The row is written after the settle transaction.
    for _ in range(300):
        rows = {row.job_id: row for row in QualityLog(node.store).rows()}
        if job_ids <= rows.keys():
            return rows
        time.sleep(0.1)
    raise AssertionError("no quality rows")
