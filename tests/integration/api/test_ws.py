"""WebSocket sessions: multi-turn chat on one job, cancel between tokens, sealed frames."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from websockets.sync.client import connect

from fabstir.client import KeyPair, session_key_message
from tests.integration.api.conftest import PRICE_PER_TOKEN_WEI, ApiNode
from tests.integration.api.test_streaming import LONG_PROMPT, wait_settled
from tests.support.slow_generation import hold_generation_until_cancelled

pytestmark = pytest.mark.integration

FIRST = [{"role": "user", "content": "tell me a story"}]


def ws_url(node: ApiNode, token: str) -> str:
    return node.url.replace("http://", "ws://") + f"/v1/ws?token={token}"


def until(ws: Any, kind: str, opened: Any = None) -> tuple[list[dict], dict]:
    seen = []
    while True:
        frame = json.loads(ws.recv(timeout=60))
        if opened is not None:
            frame = opened(frame)
        if frame["type"] == kind:
            return seen, frame
        assert frame["type"] != "error", frame
        seen.append(frame)


def test_a_session_answers_several_turns_and_settles_their_tokens(api_node: ApiNode) -> None:
    job_id = api_node.post_chat(FIRST, max_tokens=60)
    token = api_node.renter.authenticate(api_node.url, job_id)
    with connect(ws_url(api_node, token)) as ws:
        _, connected = until(ws, "connected")
        assert connected["job_id"] == job_id
        chat = {"type": "chat", "model": api_node.model.id, "max_tokens": 5}
        ws.send(json.dumps({**chat, "messages": FIRST}))
        tokens, first = until(ws, "end_turn")
        assert tokens and first["usage"]["completion_tokens"] == sum(t["tokens"] for t in tokens)
        ws.send(json.dumps({**chat, "messages": [{"role": "user", "content": "and then?"}]}))
        _, second = until(ws, "end_turn")
        ws.send(json.dumps({"type": "end"}))
        _, closed = until(ws, "closed")
    total = first["usage"]["completion_tokens"] + second["usage"]["completion_tokens"]
    assert closed["completion_tokens"] == total
    wait_settled(api_node, job_id)
    job = api_node.renter.chain.get_job(job_id)
    assert job.tokens_used == total
    receipt = api_node.host.find_settlement(job_id)
    assert receipt is not None
    assert receipt.paid_to_host_wei + receipt.fee_wei == total * PRICE_PER_TOKEN_WEI


def test_cancel_stops_a_turn_between_tokens(
    api_node: ApiNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_generation_until_cancelled(monkeypatch, after_pieces=4)
    long = [{"role": "user", "content": LONG_PROMPT}]
    job_id = api_node.post_chat(long, max_tokens=400)
    token = api_node.renter.authenticate(api_node.url, job_id)
    with connect(ws_url(api_node, token)) as ws:
        until(ws, "connected")
        ws.send(json.dumps({"type": "chat", "model": api_node.model.id, "messages": long}))
        until(ws, "token")
        ws.send(json.dumps({"type": "cancel"}))
        _, ended = until(ws, "end_turn")
        ws.send(json.dumps({"type": "end"}))
        until(ws, "closed")
    assert ended["finish_reason"] == "cancelled"
    wait_settled(api_node, job_id)
    assert 0 < api_node.renter.chain.get_job(job_id).tokens_used < 400


def test_sealed_session_refuses_a_replayed_frame(api_node: ApiNode) -> None:
    job_id = api_node.post_chat(FIRST)
    token = api_node.renter.authenticate(api_node.url, job_id)
    ours = KeyPair()
    with connect(ws_url(api_node, token)) as ws:
        until(ws, "connected")
        ws.send(json.dumps({"type": "hello", "public_key": ours.public_hex}))
        _, hello = until(ws, "hello")
        text = session_key_message(job_id, ours.public_hex, hello["public_key"])
        signer = Account.recover_message(encode_defunct(text=text), signature=hello["signature"])
        assert signer == api_node.host.address  # the key is vouched for by the job's host
        cipher = ours.cipher(hello["public_key"], job_id, is_host=False)
        sealed = cipher.seal(
            {"type": "chat", "model": api_node.model.id, "messages": FIRST, "max_tokens": 4}
        )
        ws.send(json.dumps(sealed))
        raw_token = json.loads(ws.recv(timeout=60))
        assert raw_token["type"] == "sealed" and "story" not in json.dumps(raw_token)
        opened = cipher.open(raw_token)
        assert opened["type"] == "token"
        until(ws, "end_turn", cipher.open)
        ws.send(json.dumps(sealed))  # the same frame again
        _, error = until(ws, "error", cipher.open)
    assert error["code"] == "bad_sequence"


def test_a_session_without_a_valid_token_is_refused(api_node: ApiNode) -> None:
    with connect(ws_url(api_node, "fab_bogus")) as ws:
        frame = json.loads(ws.recv(timeout=10))
    assert frame == {
        "type": "error",
        "code": "invalid_token",
        "message": "unknown bearer token; get one from POST /v1/auth",
    }
