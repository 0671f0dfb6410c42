"""The side channel between a job's infer step and the renter connected to the API.

The API and the job's flow run in one process. Before starting the flow, the API opens a
:class:`JobStream` for the job; the infer step (``pipeline.infer``) finds it by job id, takes its
turns and publishes each generated piece to it as it is produced, then the rest of the flow
(store, prove, settle) finishes after the renter has the answer. A renter who leaves cancels the
stream, and the infer step stops before the next token.

The API starts generating the first turn as soon as the request is checked
(:meth:`JobStream.prestart`): the prompt is evaluated while the flow's first steps run (the job
was claimed when its renter authenticated, so its claim step only confirms that), yet no token
reaches the renter before them, because only the infer step publishes.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fabstir.domain import InferenceResult
from fabstir.errors import JobRejected, TransientError
from fabstir.models import Generation, SamplingParams, TokenPiece


@dataclass(frozen=True)
class Turn:
    """One answer to generate; ``messages`` None means the job's own prompt document.

    ``allow_reuse``: a turn sampled at temperature > 0 may take and leave cached answers.
    """

    params: SamplingParams
    messages: tuple[dict[str, str], ...] | None = None
    allow_reuse: bool = False


@dataclass(frozen=True)
class TurnEnded:
    """The last event of a turn: its own counts and why it stopped (stop, length, cancelled)."""

    result: InferenceResult
    finish_reason: str


@dataclass(frozen=True)
class StreamFailed:
    """The job's flow failed before the turn ended."""

    error: BaseException


StreamEvent = TokenPiece | TurnEnded | StreamFailed


class JobStream:
    """Turns a renter asks of one job, and the events the infer step sends back.

    An HTTP request is one turn; a WebSocket session submits more until it ends. Producer calls
    (``turns``, ``publish``, ``end_turn``) come from the flow's thread, consumer calls from the
    API's event loop, which a new event wakes directly (no worker thread between them: a hop
    per token costs the decode on 2 cores).
    """

    def __init__(self, job_id: int, first: Turn, *, multi_turn: bool = False) -> None:
        self.job_id = job_id
        self._turns: queue.Queue[Turn | None] = queue.Queue()
        self._turns.put(first)
        if not multi_turn:
            self._turns.put(None)
        self._events: deque[StreamEvent] = deque()
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._cancelled = threading.Event()
        self._closed = threading.Event()
        self._prestarted: tuple[Turn, Generation] | None = None
        self._prestart_taken = False
        self._answered = False
        self._held: StreamEvent | None = None
        self._lock = threading.Lock()

    # Producer side: the infer step.

    def turns(self) -> Iterator[Turn]:
        """Yield each turn to answer, waiting for the next until the renter ends the session."""
        while (turn := self._turns.get()) is not None:
            self._answered = True
            yield turn

    @property
    def answered(self) -> bool:
        """Whether the infer step took a turn (a flow that found the job settled takes none)."""
        return self._answered

    def take_prestarted(self) -> tuple[Turn, Generation] | None:
        """Return the generation the API started for the first turn, and what it answers; the
        caller cancels it if it does not use it."""
        with self._lock:
            prestarted, self._prestarted = self._prestarted, None
            self._prestart_taken = True
        return prestarted

    def publish(self, piece: TokenPiece) -> bool:
        """Send a piece to the renter; return False once the renter cancelled the turn."""
        if self._cancelled.is_set():
            return False
        self._put(piece)
        return True

    def end_turn(self, result: InferenceResult, finish_reason: str) -> None:
        self._put(TurnEnded(result, finish_reason))

    def fail(self, error: BaseException) -> None:
        """Report a failure of the job's flow to the renter and end the session."""
        self._put(StreamFailed(error))
        self.close()

    def _put(self, event: StreamEvent) -> None:
        with self._lock:
            self._events.append(event)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            loop, woken = waiter
            loop.call_soon_threadsafe(_wake, woken)

    # Consumer side: the API.

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def prestart(self, turn: Turn, generation: Generation) -> None:
        """Hand the infer step a generation of the first turn (``turn``, with its messages)
        started before the flow reached it; it is cancelled if the infer step has already
        looked for one, or when the stream closes untaken."""
        with self._lock:
            late = self._prestart_taken or self._closed.is_set()
            if not late:
                self._prestarted = (turn, generation)
        if late:
            generation.cancel()

    def submit(self, turn: Turn) -> None:
        """Queue another turn of a session, once the previous one has ended.

        Raises:
            JobRejected: the session has ended (``code="session_closed"``).
        """
        if self._closed.is_set():
            raise JobRejected("the session has ended", code="session_closed", job_id=self.job_id)
        self._cancelled.clear()
        self._turns.put(turn)

    async def next_event(self, timeout_s: float) -> StreamEvent:
        """Wait for the next event of the current turn (see :meth:`ready_event`).

        Raises:
            TransientError: nothing came within ``timeout_s`` (``code="stream_timeout"``).
        """
        event = self.ready_event()
        while event is None:
            loop = asyncio.get_running_loop()
            woken = loop.create_future()
            with self._lock:
                if self._events:
                    woken.set_result(None)
                else:
                    self._waiter = (loop, woken)
            try:
                async with asyncio.timeout(timeout_s):
                    await woken
            except TimeoutError:
                raise TransientError(
                    "no token from the job within the timeout",
                    code="stream_timeout",
                    job_id=self.job_id,
                    timeout_s=timeout_s,
                ) from None
            finally:
                with self._lock:
                    if self._waiter is not None and self._waiter[1] is woken:
                        self._waiter = None
            event = self.ready_event()
        return event

    def ready_event(self) -> StreamEvent | None:
        """The next event if one is waiting, else None, without blocking.

        Pieces already waiting are sent as one: a renter whose connection lags behind generation
        gets fewer, larger chunks, and the API spends less per token while the model decodes.
        """
        event, self._held = self._held, None
        events = self._events
        if event is None:
            if not events:
                return None
            event = events.popleft()
        if not isinstance(event, TokenPiece):
            return event
        text, tokens = [event.text], event.tokens
        while events:
            following = events.popleft()
            if not isinstance(following, TokenPiece):
                self._held = following
                break
            text.append(following.text)
            tokens += following.tokens
        return event if len(text) == 1 else TokenPiece("".join(text), tokens)

    def cancel(self) -> None:
        """Stop the current turn before its next token; it is billed for what was produced."""
        self._cancelled.set()

    def close(self) -> None:
        """Take no more turns: the infer step finishes after the current one."""
        if not self._closed.is_set():
            self._closed.set()
            self._turns.put(None)
        prestarted = self.take_prestarted()
        if prestarted is not None:
            prestarted[1].cancel()


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():  # a consumer that timed out has left
        woken.set_result(None)


class Request(NamedTuple):
    """What a renter's request hands the job's flow started at the handshake."""

    prompt: bytes
    asked_at: float  # Unix time the request came, where the answer's clock starts


@dataclass
class _PreparedRun:
    run: Future[Any] | None = None
    waiting: threading.Event = field(default_factory=threading.Event)
    requested: threading.Event = field(default_factory=threading.Event)
    request: Request | None = None


class JobStreams:
    """The open streams of this process, one per job at most, and the job flows started at
    their renter's handshake that wait for its request.

    A flow started at the handshake does its Prefect start-up (creating and starting the run,
    ~0.1–0.2 s on 2 cores), checks the job on chain and runs its steps before infer before the
    renter asks, instead of between the request and its first token; its infer step then waits in
    :meth:`await_request` until the request hands it the prompt (:meth:`hand_over`), or gives
    up, and a later request starts a flow of its own.
    """

    def __init__(self) -> None:
        self._streams: dict[int, JobStream] = {}
        self._prepared: dict[int, _PreparedRun] = {}
        self._lock = threading.Lock()

    def prepare(self, job_id: int, start: Callable[[], Future[Any]], *, most: int) -> bool:
        """Start the job's flow with ``start`` to wait for its request, unless the job is being
        answered, a flow already waits for it, or ``most`` flows already wait; return whether
        it was started."""
        prepared = _PreparedRun()
        with self._lock:
            waiting = sum(not kept.requested.is_set() for kept in self._prepared.values())
            if job_id in self._streams or job_id in self._prepared or waiting >= most:
                return False
            self._prepared[job_id] = prepared
        try:
            prepared.run = run = start()
        except BaseException:
            self._forget(job_id, prepared)
            raise
        run.add_done_callback(lambda _: self._forget(job_id, prepared))
        return True

    def wait_until_waiting(self, job_id: int, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` until the job's prepared flow waits for the request (or has
        ended)."""
        with self._lock:
            prepared = self._prepared.get(job_id)
        if prepared is not None:
            prepared.waiting.wait(timeout_s)

    def await_request(self, job_id: int, timeout_s: float) -> Request | None:
        """Called by the job's prepared flow: wait up to ``timeout_s`` for the renter's request;
        return it once it was handed over, None if none came (or nothing was prepared). A
        retried infer step finds the request it was handed before."""
        with self._lock:
            prepared = self._prepared.get(job_id)
        if prepared is None:
            return None
        prepared.waiting.set()
        prepared.requested.wait(timeout_s)
        with self._lock:
            # Decided under the lock, so a request and a timeout at the same moment agree.
            if prepared.requested.is_set():
                return prepared.request
            self._forget_locked(job_id, prepared)
            return None

    def hand_over(self, job_id: int, request: Request) -> Future[Any] | None:
        """Give the renter's request to the job's prepared flow and return that flow's future,
        or None when no flow waits for it (the caller starts one)."""
        with self._lock:
            prepared = self._prepared.get(job_id)
            if (
                prepared is None
                or prepared.requested.is_set()
                or prepared.run is None
                or prepared.run.done()
            ):
                return None
            # Kept until the flow ends, for a retry of its infer step.
            prepared.request = request
            prepared.requested.set()
            return prepared.run

    def _forget(self, job_id: int, prepared: _PreparedRun) -> None:
        with self._lock:
            self._forget_locked(job_id, prepared)
        prepared.waiting.set()  # a flow that ended early no longer keeps the handshake waiting

    def _forget_locked(self, job_id: int, prepared: _PreparedRun) -> None:
        if self._prepared.get(job_id) is prepared:
            del self._prepared[job_id]

    def open(self, job_id: int, first: Turn, *, multi_turn: bool = False) -> JobStream:
        """Open the stream of a job before its flow starts.

        Raises:
            JobRejected: a renter is already connected to this job (``code="job_busy"``).
        """
        with self._lock:
            if job_id in self._streams:
                raise JobRejected(
                    "this job is already being answered", code="job_busy", job_id=job_id
                )
            stream = JobStream(job_id, first, multi_turn=multi_turn)
            self._streams[job_id] = stream
            return stream

    def get(self, job_id: int) -> JobStream | None:
        with self._lock:
            return self._streams.get(job_id)

    def release(self, stream: JobStream) -> None:
        """Forget a stream once its job's flow has ended."""
        stream.close()
        with self._lock:
            if self._streams.get(stream.job_id) is stream:
                del self._streams[stream.job_id]

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)
