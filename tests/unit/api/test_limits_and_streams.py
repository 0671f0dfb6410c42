from __future__ import annotations

import asyncio
import threading

import pytest

from fabstir.api.limits import RateLimiter, StreamSlots
from fabstir.api.streams import JobStreams, StreamFailed, Turn, TurnEnded
from fabstir.domain import InferenceResult, chat_prompt, prompt_messages
from fabstir.errors import JobRejected, LimitExceeded, TransientError
from fabstir.models import SamplingParams, TokenPiece


def test_the_rate_limiter_refuses_beyond_its_rate_and_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(per_min=2, clock=lambda: now[0])
    limiter.hit("a")
    limiter.hit("a")
    limiter.hit("b")
    with pytest.raises(LimitExceeded) as info:
        limiter.hit("a")
    assert info.value.code == "rate_limited" and 0 < info.value.context["retry_after_s"] <= 30
    now[0] = 30.0
    limiter.hit("a")


def test_stream_slots_are_bounded() -> None:
    slots = StreamSlots(1)
    slots.acquire()
    with pytest.raises(LimitExceeded):
        slots.acquire()
    slots.release()
    slots.acquire()


RESULT = InferenceResult(text="ab", prompt_tokens=3, completion_tokens=2, cache_hit=False)


def test_a_stream_carries_one_turn_from_producer_to_consumer() -> None:
    streams = JobStreams()
    stream = streams.open(1, Turn(SamplingParams()))
    with pytest.raises(JobRejected) as info:
        streams.open(1, Turn(SamplingParams()))
    assert info.value.code == "job_busy"

    def produce() -> None:
        for _ in streams.get(1).turns():
            stream.publish(TokenPiece("a", 1))
            stream.publish(TokenPiece("b", 1))
            stream.end_turn(RESULT, "stop")

    threading.Thread(target=produce).start()
    # Pieces that wait for the consumer arrive merged; text and token count add up either way.
    pieces = []
    while not isinstance(event := asyncio.run(stream.next_event(5)), TurnEnded):
        pieces.append(event)
    assert event == TurnEnded(RESULT, "stop")
    assert "".join(p.text for p in pieces) == "ab" and sum(p.tokens for p in pieces) == 2
    streams.release(stream)
    assert streams.get(1) is None


def test_a_cancelled_stream_refuses_pieces_and_a_failure_reaches_the_consumer() -> None:
    stream = JobStreams().open(2, Turn(SamplingParams()), multi_turn=True)
    stream.cancel()
    assert stream.publish(TokenPiece("x", 1)) is False
    stream.fail(ValueError("boom"))
    event = asyncio.run(stream.next_event(1))
    assert isinstance(event, StreamFailed) and str(event.error) == "boom"
    with pytest.raises(JobRejected):
        stream.submit(Turn(SamplingParams()))
    with pytest.raises(TransientError) as info:
        asyncio.run(stream.next_event(0.01))
    assert info.value.code == "stream_timeout"


def test_chat_prompt_documents_round_trip_and_plain_text_is_one_user_turn() -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "héllo"}]
    document = chat_prompt(messages)
    assert document == chat_prompt([dict(reversed(m.items())) for m in messages])
    assert prompt_messages(document.decode()) == messages
    assert prompt_messages("plain text") == [{"role": "user", "content": "plain text"}]
    assert prompt_messages('{"messages": "not turns"}')[0]["role"] == "user"


class _Started:
    """Stands in for a started ``Generation``: these tests only observe its cancellation."""

    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_an_answer_started_before_the_claim_is_taken_once_or_cancelled() -> None:
    turn = Turn(SamplingParams(max_tokens=4), ({"role": "user", "content": "hi"},))
    streams = JobStreams()

    taken = streams.open(1, Turn(turn.params))
    early = _Started()
    taken.prestart(turn, early)  # type: ignore[arg-type]
    assert taken.take_prestarted() == (turn, early) and taken.take_prestarted() is None
    streams.release(taken)
    assert not early.cancelled, "the infer step that took it owns it"

    late = streams.open(2, Turn(turn.params))
    assert late.take_prestarted() is None  # the infer step looked before the API started it
    too_late = _Started()
    late.prestart(turn, too_late)  # type: ignore[arg-type]
    assert too_late.cancelled and late.take_prestarted() is None

    untaken = streams.open(3, Turn(turn.params))
    unused = _Started()
    untaken.prestart(turn, unused)  # type: ignore[arg-type]
    streams.release(untaken)
    assert unused.cancelled
