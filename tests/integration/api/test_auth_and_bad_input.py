"""Access bound to the chain, and malformed requests: each a 4xx with a clear message."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fabstir.client import sign_access
from fabstir.settings import ANVIL_KEYS
from tests.integration.api.conftest import ApiNode
from tests.integration.api.test_streaming import wait_settled

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "hello there"}]


def auth_body(node: ApiNode, job_id: int, *, key: str = ANVIL_KEYS[2], **overrides: Any) -> dict:
    deployment = node.deployment
    fields = {
        "chain_id": deployment.chain_id,
        "marketplace": deployment.job_marketplace,
        "job_id": job_id,
        "host": node.host.address,
        "expires_at": int(time.time()) + 300,
    }
    fields.update(overrides)
    request = sign_access(key, **fields)
    return {
        "job_id": request.job_id,
        "host": request.host,
        "nonce": request.nonce,
        "expires_at": request.expires_at,
        "signature": request.signature,
    }


def post_auth(node: ApiNode, body: dict) -> httpx.Response:
    return httpx.post(node.url + "/v1/auth", json=body)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


def test_a_reused_nonce_is_refused(api_node: ApiNode) -> None:
    job_id = api_node.post_chat(MESSAGES)
    body = auth_body(api_node, job_id)
    assert post_auth(api_node, body).status_code == 200
    response = post_auth(api_node, body)
    assert response.status_code == 409 and error_of(response)["code"] == "nonce_reused"


def test_an_expired_signature_is_refused(api_node: ApiNode) -> None:
    job_id = api_node.post_chat(MESSAGES)
    response = post_auth(api_node, auth_body(api_node, job_id, expires_at=int(time.time()) - 1))
    assert response.status_code == 401 and error_of(response)["code"] == "auth_expired"


def test_an_expired_token_is_refused(api_node: ApiNode) -> None:
    job_id = api_node.post_chat(MESSAGES)
    body = auth_body(api_node, job_id, expires_at=int(time.time()) + 2)
    token = post_auth(api_node, body).json()["token"]
    time.sleep(2.5)
    response = httpx.get(
        f"{api_node.url}/v1/jobs/{job_id}/result", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401 and error_of(response)["code"] == "token_expired"


def test_another_renters_job_is_refused(api_node: ApiNode) -> None:
    job_id = api_node.post_chat(MESSAGES)
    response = post_auth(api_node, auth_body(api_node, job_id, key=ANVIL_KEYS[3]))
    assert response.status_code == 403 and error_of(response)["code"] == "not_job_renter"


def test_a_token_works_only_for_its_own_job(api_node: ApiNode) -> None:
    first, second = api_node.post_chat(MESSAGES), api_node.post_chat(MESSAGES)
    token = api_node.renter.authenticate(api_node.url, first)
    response = httpx.get(
        f"{api_node.url}/v1/jobs/{second}/result", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403 and error_of(response)["code"] == "token_for_other_job"


def test_a_settled_job_takes_no_more_requests(api_node: ApiNode) -> None:
    job_id = api_node.post_chat(MESSAGES)
    token = api_node.renter.authenticate(api_node.url, job_id)
    assert "".join(api_node.renter.chat(api_node.url, token, api_node.model.id, MESSAGES))
    wait_settled(api_node, job_id)
    response = httpx.post(
        api_node.url + "/v1/chat/completions",
        json={"model": api_node.model.id, "messages": MESSAGES},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 409 and error_of(response)["code"] == "job_settled"


Case = tuple[str, Callable[[ApiNode, str], httpx.Response], int, str]


def _chat(node: ApiNode, token: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return httpx.post(
        node.url + "/v1/chat/completions", json=body, headers=headers, timeout=60, **kwargs
    )


def _chat_with(**changes: Any) -> Callable[[ApiNode, str], httpx.Response]:
    def send(node: ApiNode, token: str) -> httpx.Response:
        body = {"model": node.model.id, "messages": MESSAGES, **changes}
        return _chat(node, token, {k: v for k, v in body.items() if v is not ...})

    return send


MALFORMED: list[Case] = [
    (
        "bad json",
        lambda n, t: _chat(
            n, t, content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        400,
        "invalid_json",
    ),
    ("body not an object", lambda n, t: _chat(n, t, [1, 2]), 400, "invalid_request"),
    ("missing messages", _chat_with(messages=...), 400, "invalid_request"),
    ("empty messages", _chat_with(messages=[]), 400, "invalid_request"),
    (
        "unknown role",
        _chat_with(messages=[{"role": "wizard", "content": "x"}]),
        400,
        "invalid_request",
    ),
    (
        "content of wrong type",
        _chat_with(messages=[{"role": "user", "content": 5}]),
        400,
        "invalid_request",
    ),
    ("negative max_tokens", _chat_with(max_tokens=-1), 400, "invalid_request"),
    ("max_tokens as text", _chat_with(max_tokens="ten"), 400, "invalid_request"),
    ("max_tokens above the job", _chat_with(max_tokens=10_000), 400, "max_tokens_above_job"),
    ("temperature out of range", _chat_with(temperature=9), 400, "invalid_request"),
    ("top_p zero", _chat_with(top_p=0), 400, "invalid_request"),
    ("too many stops", _chat_with(stop=["a", "b", "c", "d", "e"]), 400, "invalid_request"),
    ("n above one", _chat_with(n=3), 400, "invalid_request"),
    ("unknown argument", _chat_with(frobnicate=True), 400, "invalid_request"),
    ("unknown model", _chat_with(model="no-such-model"), 404, "model_not_served"),
    (
        "other prompt than the job's",
        _chat_with(messages=[{"role": "user", "content": "else"}]),
        400,
        "prompt_mismatch",
    ),
    ("stream not a bool", _chat_with(stream="maybe"), 400, "invalid_request"),
    (
        "huge body",
        lambda n, t: _chat(
            n, t, {"model": "m", "messages": [{"role": "user", "content": "x" * (2 << 20)}]}
        ),
        413,
        "body_too_large",
    ),
    (
        "no token",
        lambda n, t: httpx.post(n.url + "/v1/chat/completions", json={}),
        401,
        "missing_token",
    ),
    (
        "unknown token",
        lambda n, t: _chat(n, "fab_nonsense", {"model": "m", "messages": MESSAGES}),
        401,
        "invalid_token",
    ),
    (
        "auth: invalid signature",
        lambda n, t: post_auth(n, {**auth_body(n, 1), "signature": "0x" + "00" * 65}),
        401,
        "invalid_signature",
    ),
    (
        "auth: signature not hex",
        lambda n, t: post_auth(n, {**auth_body(n, 1), "signature": "0xzz"}),
        400,
        "invalid_request",
    ),
    (
        "auth: another host",
        lambda n, t: post_auth(n, auth_body(n, 1, host="0x" + "12" * 20)),
        403,
        "not_our_job",
    ),
    (
        "auth: expiry too far",
        lambda n, t: post_auth(n, auth_body(n, 1, expires_at=int(time.time()) + 10**6)),
        400,
        "expiry_too_far",
    ),
    ("auth: unknown job", lambda n, t: post_auth(n, auth_body(n, 10**9)), 404, "unknown_job"),
    (
        "auth: negative job id",
        lambda n, t: post_auth(n, {**auth_body(n, 1), "job_id": -4}),
        400,
        "invalid_request",
    ),
    ("job id not a number", lambda n, t: httpx.get(n.url + "/v1/jobs/abc"), 400, "invalid_request"),
    ("unknown route", lambda n, t: httpx.get(n.url + "/v1/nothing"), 404, "not_found"),
    ("wrong method", lambda n, t: httpx.delete(n.url + "/v1/models"), 405, "method_not_allowed"),
    (
        "embeddings: unknown model",
        lambda n, t: httpx.post(
            n.url + "/v1/embeddings",
            json={"model": "x", "input": "a"},
            headers={"Authorization": f"Bearer {t}"},
        ),
        404,
        "model_not_served",
    ),
]


def test_malformed_requests_get_a_clear_4xx_and_the_node_keeps_serving(api_node: ApiNode) -> None:
    job_id = api_node.post_chat(MESSAGES)
    token = api_node.renter.authenticate(api_node.url, job_id)
    problems = []
    for name, send, status, code in MALFORMED:
        response = send(api_node, token)
        error = error_of(response) if response.status_code != 200 else {}
        if (response.status_code, error.get("code")) != (status, code):
            problems.append((name, response.status_code, response.text[:200]))
        assert httpx.get(api_node.url + "/health").status_code == 200
    assert not problems
    assert len(MALFORMED) >= 20
    # The job is still answerable after all that.
    assert "".join(api_node.renter.chat(api_node.url, token, api_node.model.id, MESSAGES))


def test_a_result_stored_under_the_jobs_id_for_another_prompt_is_not_served(
    api_node: ApiNode,
) -> None:
    from fabstir.domain import InferenceResult, LocalModel
    from fabstir.pipeline import store_result
    from tests.support.jobs import HASH, claimed_job

    job_id = api_node.post_chat(MESSAGES)
    # What a devnet started again leaves in the node's storage: the same renter's job under the
    # same id, with another prompt.
    earlier_job = claimed_job(job_id, renter=api_node.renter.address, prompt_hash=HASH)
    answer = InferenceResult(
        text="not yours", prompt_tokens=2, completion_tokens=3, cache_hit=False
    )
    model = LocalModel(name="tiny", path="/models/tiny.gguf", sha256="cd" * 32)
    store_result(api_node.services.store, earlier_job, model, answer)

    token = api_node.renter.authenticate(api_node.url, job_id)
    response = httpx.get(
        f"{api_node.url}/v1/jobs/{job_id}/result", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 404 and error_of(response)["code"] == "result_not_ready"
