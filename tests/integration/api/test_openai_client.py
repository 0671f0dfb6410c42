"""The unmodified openai client against a node, with a job escrowed on chain per request."""

from __future__ import annotations

import time

import pytest
from openai import OpenAI

from fabstir.client import Delivery
from fabstir.domain import JobState
from tests.integration.api.conftest import ApiNode

pytestmark = pytest.mark.integration


def openai_for(node: ApiNode, job_id: int) -> OpenAI:
    token = node.renter.authenticate(node.url, job_id)
    return OpenAI(base_url=node.url + "/v1", api_key=token, max_retries=0)


def test_streaming_chat_with_the_openai_client_settles_the_job(api_node: ApiNode) -> None:
    messages = [{"role": "user", "content": "the cat sat on"}]
    job_id = api_node.post_chat(messages)
    client = openai_for(api_node, job_id)
    generations = api_node.services.engines.generations

    stream = client.chat.completions.create(
        model=api_node.model.id,
        messages=messages,
        stream=True,
        max_tokens=12,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert 0 < usage.completion_tokens <= 12
    assert text
    # store, prove and settle finish after the stream: the job is billed for what was sent.
    delivery = _wait_settled(api_node, job_id)
    assert delivery.record.output == text
    assert delivery.job.tokens_used == usage.completion_tokens
    # The answer the API started while the job was claimed is the one streamed and billed.
    assert api_node.services.engines.generations == generations + 1


def test_non_streaming_chat_with_the_openai_client(api_node: ApiNode) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a dog ran"},
    ]
    job_id = api_node.post_chat(messages)
    client = openai_for(api_node, job_id)

    completion = client.chat.completions.create(
        model=api_node.model.id, messages=messages, max_tokens=8
    )

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 8
    assert _wait_settled(api_node, job_id).record.output == completion.choices[0].message.content


def _wait_settled(node: ApiNode, job_id: int) -> Delivery:
    token = node.renter.authenticate(node.url, job_id)
    for _ in range(600):
        if node.renter.chain.get_job(job_id).state is JobState.SETTLED:
            return node.renter.fetch_result(node.url, token, job_id)
        time.sleep(0.1)
    raise AssertionError("job did not settle")
