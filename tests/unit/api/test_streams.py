"""The side channel from a job's infer step to the renter's connection."""

from __future__ import annotations

import asyncio
import threading

import pytest

from fabstir.api.streams import JobStream, StreamEvent, Turn, TurnEnded
from fabstir.domain import InferenceResult
from fabstir.errors import TransientError
from fabstir.models import SamplingParams, TokenPiece

RESULT = InferenceResult(text="abc", prompt_tokens=2, completion_tokens=3, cache_hit=False)


def stream() -> JobStream:
    return JobStream(7, Turn(SamplingParams(max_tokens=8)))


def test_pieces_waiting_for_a_lagging_renter_are_sent_as_one_with_their_token_count() -> None:
    jobs = stream()
    for text in ("a", "b", "c"):
        assert jobs.publish(TokenPiece(text, 1))
    jobs.end_turn(RESULT, "stop")

    assert asyncio.run(jobs.next_event(1.0)) == TokenPiece("abc", 3)
    assert asyncio.run(jobs.next_event(1.0)) == TurnEnded(RESULT, "stop")  # held back, not lost


def test_a_renter_that_keeps_up_gets_each_piece_as_it_comes() -> None:
    jobs = stream()
    assert jobs.ready_event() is None
    jobs.publish(TokenPiece("a", 1))
    assert jobs.ready_event() == TokenPiece("a", 1)
    jobs.publish(TokenPiece("b", 1))
    assert asyncio.run(jobs.next_event(1.0)) == TokenPiece("b", 1)


def test_a_silent_job_times_out_with_a_clear_error() -> None:
    with pytest.raises(TransientError) as silent:
        asyncio.run(stream().next_event(0.01))
    assert silent.value.code == "stream_timeout"


def test_a_waiting_consumer_is_woken_by_a_piece_from_another_thread() -> None:
    jobs = stream()

    async def consume() -> StreamEvent:
        loop = asyncio.get_running_loop()
        loop.call_later(
            0.05, lambda: threading.Thread(target=jobs.end_turn, args=(RESULT, "stop")).start()
        )
        return await jobs.next_event(5.0)

    assert asyncio.run(consume()) == TurnEnded(RESULT, "stop")
