"""The side channel from a job's infer step to the renter's connection."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from fabstir.api.streams import JobStream, JobStreams, Request, StreamEvent, Turn, TurnEnded
from fabstir.domain import InferenceResult
from fabstir.errors import TransientError
from fabstir.models import SamplingParams, TokenPiece

REQUEST = Request(b"the prompt", asked_at=1_795_000_000.0)

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


# Flows started at the renter's handshake, waiting for the request (JobStreams.prepare).


def _waiting_flow(
    streams: JobStreams, job_id: int, wait_s: float
) -> tuple[Future[Request | None], ThreadPoolExecutor]:
    """Prepare a stand-in for the job's flow: a thread that only waits for the request."""
    runner = ThreadPoolExecutor(1)
    run: list[Future[Request | None]] = []

    def start() -> Future[Request | None]:
        run.append(runner.submit(streams.await_request, job_id, wait_s))
        return run[0]

    assert streams.prepare(job_id, start, most=2)
    return run[0], runner


def test_a_request_is_handed_to_the_flow_waiting_for_it() -> None:
    streams = JobStreams()
    run, runner = _waiting_flow(streams, 7, wait_s=30)
    streams.wait_until_waiting(7, timeout_s=5)

    assert streams.hand_over(7, REQUEST) is run
    assert run.result(timeout=5) == REQUEST
    assert streams.hand_over(7, REQUEST) is None, "handed over once"
    runner.shutdown()


def test_a_retried_infer_step_finds_the_request_it_was_handed() -> None:
    streams = JobStreams()
    runner = ThreadPoolExecutor(1)

    def infer_twice() -> list[Request | None]:
        return [streams.await_request(7, 30), streams.await_request(7, 30)]

    assert streams.prepare(7, lambda: runner.submit(infer_twice), most=2)
    streams.wait_until_waiting(7, timeout_s=5)
    run = streams.hand_over(7, REQUEST)

    assert run is not None and run.result(timeout=5) == [REQUEST, REQUEST]
    runner.shutdown()


def test_a_flow_whose_request_does_not_come_ends_and_the_request_starts_its_own() -> None:
    streams = JobStreams()
    run, runner = _waiting_flow(streams, 7, wait_s=0.05)

    assert run.result(timeout=5) is None
    assert streams.hand_over(7, REQUEST) is None
    assert streams.prepare(7, lambda: Future(), most=2), "the job may be prepared again"
    runner.shutdown()


def test_a_flow_with_nothing_prepared_does_not_wait() -> None:
    assert JobStreams().await_request(7, timeout_s=30) is None


def test_no_flow_is_prepared_twice_for_a_job_nor_past_the_limit_nor_for_one_being_answered() -> (
    None
):
    streams = JobStreams()
    started: list[int] = []

    def start(job_id: int) -> Future[None]:
        started.append(job_id)
        return Future()

    assert streams.prepare(1, lambda: start(1), most=2)
    assert not streams.prepare(1, lambda: start(1), most=2)
    assert streams.prepare(2, lambda: start(2), most=2)
    assert not streams.prepare(3, lambda: start(3), most=2)
    streams.open(4, Turn(SamplingParams(max_tokens=8)))
    assert not streams.prepare(4, lambda: start(4), most=9)
    assert not streams.prepare(5, lambda: start(5), most=0)
    assert started == [1, 2]


def test_a_flow_that_ended_before_the_request_is_not_handed_it_nor_waited_for() -> None:
    streams = JobStreams()
    run: Future[None] = Future()
    assert streams.prepare(7, lambda: run, most=2)
    run.set_exception(RuntimeError("prefect down"))

    streams.wait_until_waiting(7, timeout_s=30)  # returns at once
    assert streams.hand_over(7, REQUEST) is None


def test_a_flow_that_fails_to_start_is_not_left_prepared() -> None:
    streams = JobStreams()

    def start() -> Future[None]:
        raise RuntimeError("prefect down")

    with pytest.raises(RuntimeError, match="prefect down"):
        streams.prepare(7, start, most=2)
    assert streams.hand_over(7, REQUEST) is None
    assert streams.prepare(7, lambda: Future(), most=1)
