"""SSE framing byte for byte, completions, cancelling mid-stream, jobs, models, readiness."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from fabstir.domain import JobState
from tests.integration.api.conftest import MAX_TOKENS, PRICE_PER_TOKEN_WEI, ApiNode
from tests.support.slow_generation import hold_generation_until_cancelled

pytestmark = pytest.mark.integration

CHAT_CHUNK = re.compile(
    rb'data: \{"id":"chatcmpl-[0-9a-f]{32}","object":"chat\.completion\.chunk","created":\d+,'
    rb'"model":"tiny-test-model","system_fingerprint":null,"choices":\[\{"index":0,'
    rb'"delta":\{(?P<delta>[^\n]*)\},"logprobs":null,"finish_reason":(?P<finish>null|"stop"|"length")'
    rb'\}\],"usage":null\}\n\n'
)
USAGE_CHUNK = re.compile(
    rb'data: \{"id":"chatcmpl-[0-9a-f]{32}","object":"chat\.completion\.chunk","created":\d+,'
    rb'"model":"tiny-test-model","system_fingerprint":null,"choices":\[\],"usage":\{'
    rb'"prompt_tokens":\d+,"completion_tokens":\d+,"total_tokens":\d+\}\}\n\n'
)


# The tiny model answers this greedily with 400 tokens and no end token.
LONG_PROMPT = "on sun sat"


def wait_settled(node: ApiNode, job_id: int) -> None:
    for _ in range(600):
        if node.renter.chain.get_job(job_id).state is JobState.SETTLED:
            return
        time.sleep(0.1)
    raise AssertionError("job did not settle")


def test_sse_frames_are_exactly_openais(api_node: ApiNode) -> None:
    messages = [{"role": "user", "content": "one two three"}]
    job_id = api_node.post_chat(messages)
    token = api_node.renter.authenticate(api_node.url, job_id)
    body = {
        "model": api_node.model.id,
        "messages": messages,
        "stream": True,
        "max_tokens": 6,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST",
        api_node.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()

    frames = [frame + b"\n\n" for frame in raw.split(b"\n\n") if frame]
    assert frames[-1] == b"data: [DONE]\n\n"
    assert USAGE_CHUNK.fullmatch(frames[-2])
    matches = [CHAT_CHUNK.fullmatch(frame) for frame in frames[:-2]]
    assert all(matches), frames
    assert matches[0]["delta"] == b'"role":"assistant","content":""'
    assert matches[-1]["delta"] == b"" and matches[-1]["finish"] in (b'"stop"', b'"length"')
    assert all(m["finish"] == b"null" for m in matches[:-1])
    ids = {json.loads(frame[6:])["id"] for frame in frames[:-1]}
    assert len(ids) == 1
    usage = json.loads(frames[-2][6:])["usage"]
    wait_settled(api_node, job_id)
    assert api_node.renter.chain.get_job(job_id).tokens_used == usage["completion_tokens"]


def test_text_completion_streams_and_answers_plain_prompts(api_node: ApiNode) -> None:
    prompt = "once upon a time"
    offer = api_node.offer()
    job_id = api_node.renter.post_job(offer, prompt.encode(), max_tokens=MAX_TOKENS)
    token = api_node.renter.authenticate(api_node.url, job_id)
    response = httpx.post(
        api_node.url + "/v1/completions",
        json={"model": api_node.model.id, "prompt": prompt, "max_tokens": 5},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["usage"]["completion_tokens"] <= 5
    wait_settled(api_node, job_id)


def test_cancelling_mid_stream_bills_only_the_tokens_sent(
    api_node: ApiNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_generation_until_cancelled(monkeypatch, after_pieces=8)
    messages = [{"role": "user", "content": LONG_PROMPT}]
    job_id = api_node.post_chat(messages, max_tokens=400)
    token = api_node.renter.authenticate(api_node.url, job_id)
    renter = api_node.renter.chain
    credit_before = renter.credit_of(renter.address)
    host_before = api_node.host.credit_of(api_node.host.address)
    body = {"model": api_node.model.id, "messages": messages, "stream": True}
    with httpx.stream(
        "POST",
        api_node.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    ) as response:
        received = 0
        for line in response.iter_lines():
            if line.startswith("data: {"):
                received += 1
            if received == 4:
                break  # leaving the block closes the connection mid-answer

    wait_settled(api_node, job_id)
    job = renter.get_job(job_id)
    assert 0 < job.tokens_used < 400
    receipt = api_node.host.find_settlement(job_id)
    assert receipt is not None
    paid = job.tokens_used * PRICE_PER_TOKEN_WEI
    assert receipt.paid_to_host_wei + receipt.fee_wei == paid
    assert renter.credit_of(renter.address) - credit_before == 400 * PRICE_PER_TOKEN_WEI - paid
    assert api_node.host.credit_of(api_node.host.address) - host_before == receipt.paid_to_host_wei


def test_job_status_result_proof_and_models(api_node: ApiNode) -> None:
    messages = [{"role": "user", "content": "status please"}]
    job_id = api_node.post_chat(messages, token="USDC")
    token = api_node.renter.authenticate(api_node.url, job_id)
    headers = {"Authorization": f"Bearer {token}"}
    # Claimed at the handshake (in the ERC-20, at our token price), answered by the request.
    assert httpx.get(f"{api_node.url}/v1/jobs/{job_id}").json()["state"] == "claimed"
    assert httpx.get(f"{api_node.url}/v1/jobs/{job_id}/result", headers=headers).status_code == 404
    text = "".join(api_node.renter.chat(api_node.url, token, api_node.model.id, messages))
    wait_settled(api_node, job_id)

    status = httpx.get(f"{api_node.url}/v1/jobs/{job_id}").json()
    assert status["state"] == "settled" and status["claim_tx"] and status["settle_tx"]
    delivery = api_node.renter.fetch_result(api_node.url, token, job_id)
    assert delivery.record.output == text
    proof = httpx.get(f"{api_node.url}/v1/jobs/{job_id}/proof", headers=headers)
    assert proof.status_code == 200 and proof.json()
    assert httpx.get(f"{api_node.url}/v1/jobs/{job_id}/proof").status_code == 401

    models = httpx.get(api_node.url + "/v1/models").json()["data"]
    assert models == [
        {
            "id": api_node.model.id,
            "object": "model",
            "created": 0,
            "owned_by": api_node.host.address,
            "price_per_token": {"ETH": PRICE_PER_TOKEN_WEI, "USDC": 3},
        }
    ]


def test_ready_and_metrics_report_real_values(api_node: ApiNode) -> None:
    messages = [{"role": "user", "content": "metrics"}]
    job_id = api_node.post_chat(messages)
    token = api_node.renter.authenticate(api_node.url, job_id)
    assert "".join(api_node.renter.chat(api_node.url, token, api_node.model.id, messages))
    wait_settled(api_node, job_id)
    ready = httpx.get(api_node.url + "/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"model": None, "chain": None}
    metrics = httpx.get(api_node.url + "/metrics").text
    assert 'fabstir_api_requests_total{route="/ready",status="200"}' in metrics
    assert "fabstir_api_time_to_first_token_seconds_count" in metrics
    tokens_out = re.search(r'fabstir_api_tokens_total\{direction="out"\} (\S+)', metrics)
    assert tokens_out and float(tokens_out[1]) > 0
    settled = re.search(r'fabstir_api_jobs\{state="settled"\} (\S+)', metrics)
    assert settled and float(settled[1]) >= 1
