"""Answer a renter's request by running its job: checks, the job's flow, and OpenAI's wire format.

The request must match the job on chain (its renter, model, prompt hash and token budget); a
renter's first request is checked against the record read when the job was claimed at its
handshake, so its answer starts generating without a chain read, and the flow's claim step
confirms the job's state before any token is sent. The prompt document is stored where the claim
step finds it, the job's flow (started at the handshake, or now) is handed the request, and the
first event is awaited before anything is sent, so a failure at start is an ordinary JSON error.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.concurrency import run_in_threadpool

from fabstir.api.auth import Grant
from fabstir.api.errors import error_body, status_of
from fabstir.api.services import ApiContext
from fabstir.api.streams import JobStream, Request, StreamEvent, StreamFailed, Turn, TurnEnded
from fabstir.domain import ZERO_ADDRESS, InferenceResult, Job, JobState, Receipt, prompt_messages
from fabstir.errors import FabstirError, JobRejected, TransientError
from fabstir.models import SamplingParams, TokenPiece, to_model_id
from fabstir.storage import put_content, sha256_hex

log = logging.getLogger(__name__)

Kind = Literal["chat", "text"]


async def check_job(ctx: ApiContext, grant: Grant, model: str) -> Job:
    """Return the grant's job if it can still be answered here, for ``model``.

    Raises:
        JobRejected: settled (``job_settled``), refunded or cancelled (``job_closed``), held by
            another host (``not_our_job``), another model (``model_mismatch``) or one this host
            does not serve (``model_not_served``).
    """
    job = ctx.claims.take(grant.job_id)
    if job is None:
        job = await run_in_threadpool(ctx.services.chain.get_job, grant.job_id)
    if job.state is JobState.SETTLED:
        raise JobRejected("the job is already settled", code="job_settled", job_id=job.job_id)
    if job.state in (JobState.REFUNDED, JobState.CANCELLED):
        raise JobRejected(f"the job was {job.state.name.lower()}", code="job_closed")
    if job.host != ZERO_ADDRESS and job.host.lower() != ctx.services.chain.address.lower():
        raise JobRejected("the job belongs to another host", code="not_our_job")
    if model not in ctx.services.catalog.names:
        raise JobRejected(
            "this host does not serve the model", code="model_not_served", param="model"
        )
    if to_model_id(model) != job.model_id.lower():
        raise JobRejected(
            "the job was posted for another model", code="model_mismatch", param="model"
        )
    return job


def check_budget(job: Job, params: SamplingParams) -> None:
    """Raises:
    JobRejected: more tokens asked than the job pays for (``max_tokens_above_job``).
    """
    if params.max_tokens > job.max_tokens:
        raise JobRejected(
            f"max_tokens is above the job's {job.max_tokens}",
            code="max_tokens_above_job",
            param="max_tokens",
        )


def check_prompt(job: Job, document: bytes, param: str) -> None:
    """Raises:
    JobRejected: the request's prompt is not the one the job commits to (``prompt_mismatch``).
    """
    if sha256_hex(document) != job.prompt_hash.lower():
        raise JobRejected(
            "the prompt does not hash to the job's prompt_hash",
            code="prompt_mismatch",
            param=param,
        )


@dataclass
class Answer:
    """A job's stream after its first event, with the timings the metrics need."""

    stream: JobStream
    first: StreamEvent
    started: float
    first_token_at: float | None = None
    pieces: list[str] = field(default_factory=list)


async def start_answer(
    ctx: ApiContext,
    job: Job,
    document: bytes,
    params: SamplingParams,
    *,
    multi_turn: bool = False,
    allow_reuse: bool = False,
) -> Answer:
    """Start the first answer's generation (which the infer step continues), store the prompt,
    start the job's flow with a stream to it, and wait for its first event.

    Raises:
        LimitExceeded: every stream slot is taken (``too_many_streams``).
        JobRejected: a renter is already connected to the job (``job_busy``), the flow found it
            settled (``job_settled``) or refused it (e.g. ``context_overflow``).
        TransientError: no first event within the timeout (``stream_timeout``).
    """
    started, asked_at = time.perf_counter(), time.time()
    ctx.slots.acquire()
    try:
        stream = ctx.services.streams.open(
            job.job_id, Turn(params, allow_reuse=allow_reuse), multi_turn=multi_turn
        )
    except BaseException:
        ctx.slots.release()
        raise
    ctx.metrics.streams.inc()
    answer = Answer(stream, TurnEnded(_EMPTY, "stop"), started)
    try:
        try:
            await run_in_threadpool(_begin, ctx, job, document, params, stream)
            # The flow started at the handshake takes the prompt, if it still waits; else the
            # request starts one of its own.
            future = ctx.services.streams.hand_over(job.job_id, Request(document, asked_at))
            if future is None:
                future = ctx.services.run_job(job.job_id)
        except BaseException:
            ctx.services.streams.release(stream)  # no flow runs to release it
            raise
        ctx.metrics.job_started()
        future.add_done_callback(lambda done: _job_ended(ctx, stream, done))
        answer.first = await next_event(answer, ctx.settings.first_token_timeout_s)
        if isinstance(answer.first, StreamFailed):
            raise _as_fabstir(answer.first.error)
    except BaseException:
        finish_answer(ctx, answer)
        raise
    return answer


_EMPTY = InferenceResult(text="", prompt_tokens=0, completion_tokens=0, cache_hit=False)


def _begin(
    ctx: ApiContext, job: Job, document: bytes, params: SamplingParams, stream: JobStream
) -> None:
    """Start generating the first answer, then store the prompt where the claim step reads it:
    the prompt is evaluated while the flow's first steps run (its tokens reach the renter only
    through the infer step)."""
    _prestart(ctx, job, document, params, stream)
    put_content(ctx.services.store, document, "prompts")


def _prestart(
    ctx: ApiContext, job: Job, document: bytes, params: SamplingParams, stream: JobStream
) -> None:
    catalog = ctx.services.catalog
    try:
        model = catalog.fetch(catalog.resolve(job.model_id))
        turn = Turn(params, tuple(prompt_messages(document.decode())))
        generation = ctx.services.engines.engine_for(model).stream(turn.messages, params)
    except FabstirError as exc:
        # The flow's infer step meets the same error and reports it through the stream.
        log.debug(
            "answer not started ahead of the claim: %s", exc.code, extra={"job_id": job.job_id}
        )
        return
    stream.prestart(turn, generation)


def _job_ended(ctx: ApiContext, stream: JobStream, done: Future[Receipt]) -> None:
    error = done.exception()
    if error is not None:
        log.warning("job flow failed: %s", error, extra={"job_id": stream.job_id})
        stream.fail(error)
    elif not stream.answered:
        # The claim step found the job settled (by an earlier request) and the flow ended there.
        stream.fail(JobRejected("the job is already settled", code="job_settled"))
    ctx.services.streams.release(stream)
    ctx.metrics.job_ended(None if error is not None else done.result())


async def next_event(answer: Answer, timeout_s: float) -> StreamEvent:
    event = await answer.stream.next_event(timeout_s)
    if isinstance(event, TokenPiece) and event.tokens and answer.first_token_at is None:
        answer.first_token_at = time.perf_counter()
    return event


def finish_answer(ctx: ApiContext, answer: Answer) -> None:
    """Release the answer's slot; an unfinished turn is cancelled (billed for what was sent)."""
    answer.stream.cancel()
    answer.stream.close()
    ctx.slots.release()
    ctx.metrics.streams.dec()


def observe(ctx: ApiContext, answer: Answer, ended: TurnEnded) -> None:
    metrics = ctx.metrics
    metrics.observe_answer(ended.result)
    if answer.first_token_at is not None:
        metrics.ttft.observe(answer.first_token_at - answer.started)
        metrics.decode.observe(time.perf_counter() - answer.first_token_at)


def _as_fabstir(error: BaseException) -> FabstirError:
    if isinstance(error, FabstirError):
        return error
    return TransientError("the job's flow failed", code="job_failed", error=type(error).__name__)


async def collect(ctx: ApiContext, answer: Answer) -> TurnEnded:
    """Wait for the rest of the turn and return its end.

    Raises:
        FabstirError: the flow failed or went silent mid-answer.
    """
    event = answer.first
    try:
        while not isinstance(event, TurnEnded):
            if isinstance(event, StreamFailed):
                raise _as_fabstir(event.error)
            answer.pieces.append(event.text)
            event = await next_event(answer, ctx.settings.token_timeout_s)
    finally:
        finish_answer(ctx, answer)
    observe(ctx, answer, event)
    return event


class ChunkFormat:
    """OpenAI's streaming chunks for chat or text completions, as SSE frames."""

    def __init__(self, kind: Kind, model: str, include_usage: bool) -> None:
        self.kind = kind
        self.model = model
        self.include_usage = include_usage
        prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
        self.id = prefix + uuid.uuid4().hex
        self.created = int(time.time())
        # A token's frame differs from the others only in its text: encode the rest once (the
        # stream's per-token cost shares 2 cores with the decode). The marker splits the frame
        # exactly where its text goes.
        marker = "\x00"
        self._text_frame = self._delta(marker).split(json.dumps(marker).encode())

    def frame(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    def delta(
        self, text: str | None, finish_reason: str | None = None, *, role: bool = False
    ) -> bytes:
        if text is not None and finish_reason is None and not role:
            head, tail = self._text_frame
            return head + json.dumps(text).encode() + tail
        return self._delta(text, finish_reason, role=role)

    def _delta(
        self, text: str | None, finish_reason: str | None = None, *, role: bool = False
    ) -> bytes:
        if self.kind == "text":
            choice = {"text": text or "", "index": 0, "logprobs": None}
        else:
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None}
        choice["finish_reason"] = finish_reason
        return self.frame([choice])

    def usage(self, result: InferenceResult) -> bytes:
        return self.frame([], usage_of(result))

    @staticmethod
    def error(error: FabstirError) -> bytes:
        body = error_body(error.message, error.code, status_of(error))
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def usage_of(result: InferenceResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


async def sse_frames(ctx: ApiContext, answer: Answer, chunks: ChunkFormat) -> AsyncIterator[bytes]:
    """Yield the answer as SSE frames; leaving early (a disconnect) cancels the turn.

    Frames ready together go out as one write (the role with the first token, the finish with
    the usage and ``[DONE]``): each write is a system call and a wake-up of the renter's reader,
    on the cores that decode the next token.
    """
    role = chunks.delta("", role=True) if chunks.kind == "chat" else b""
    try:
        event = answer.first
        while not isinstance(event, TurnEnded):
            if isinstance(event, StreamFailed):
                yield role + chunks.error(_as_fabstir(event.error))
                return
            if event.text:
                yield role + chunks.delta(event.text)
                role = b""
            try:
                event = await next_event(answer, ctx.settings.token_timeout_s)
            except TransientError as exc:
                yield role + chunks.error(exc)
                return
        observe(ctx, answer, event)
        finish = chunks.delta(None if chunks.kind == "chat" else "", event.finish_reason)
        usage = chunks.usage(event.result) if chunks.include_usage else b""
        yield role + finish + usage + DONE
    finally:
        finish_answer(ctx, answer)
