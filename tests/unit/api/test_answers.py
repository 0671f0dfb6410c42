"""OpenAI's streaming chunks: a token's frame, encoded once around its text, is the same bytes."""

from __future__ import annotations

import json

import pytest

from fabstir.api.answers import ChunkFormat


@pytest.mark.parametrize("kind", ["chat", "text"])
@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("text", ["", "plain", 'quote " and \\ slash', "é \u2028 😀 \n", "\x00"])
def test_a_tokens_frame_is_the_chunk_json_encodes(
    kind: str, include_usage: bool, text: str
) -> None:
    chunks = ChunkFormat(kind, 'model "x"', include_usage)  # type: ignore[arg-type]
    frame = chunks.delta(text)
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    chunk = json.loads(frame[6:])
    choice = chunk["choices"][0]
    assert (choice["delta"]["content"] if kind == "chat" else choice["text"]) == text
    expected = dict(chunk)
    assert frame == b"data: " + json.dumps(expected, separators=(",", ":")).encode() + b"\n\n"
