"""The answer steps: fetch the model, look up an earlier or cached answer, infer."""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from fabstir.cache import answer_reusable
from fabstir.domain import (
    ClaimedJob,
    InferenceResult,
    Job,
    LocalModel,
    StoredResult,
    prompt_messages,
)
from fabstir.errors import TransientError
from fabstir.models import (
    EnginePool,
    Generation,
    LlamaEngine,
    ModelManager,
    SamplingParams,
    TokenPiece,
)
from fabstir.pipeline.claim import attach_prompt
from fabstir.storage import JobIndex, ObjectStore, ResultRecord, decode_record, get_verified

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from fabstir.api import JobStream, JobStreams
    from fabstir.cache import SemanticCache

log = logging.getLogger(__name__)

# Market jobs carry no sampling parameters: the node decodes them greedily, so their answers are
# always cacheable. Only a renter connected through the API picks other ones.
DETERMINISTIC_TEMPERATURE = 0.0


def fetch_model(catalog: ModelManager, claimed: ClaimedJob) -> LocalModel:
    """Return the verified local file of the job's model, downloading it if needed.

    Raises:
        ModelIntegrityError: the file does not match the expected SHA-256.
        TransientError: the download was interrupted (a retry resumes it).
    """
    return catalog.fetch(catalog.resolve(claimed.job.model_id))


def cache_params_key(params: SamplingParams | None = None) -> str:
    """Return the canonical sampling parameters that scope cached answers: the node's
    deterministic ones (every market job's), or ``params`` less the token budget.
    """
    if params is None or params == SamplingParams(max_tokens=params.max_tokens):
        return json.dumps({"temperature": DETERMINISTIC_TEMPERATURE}, sort_keys=True)
    return json.dumps(params.model_dump(mode="json", exclude={"max_tokens"}), sort_keys=True)


def cut_answer_key(params_key: str, max_tokens: int) -> str:
    """Return the scope of an answer cut at ``max_tokens``: the whole answer only for a job with
    that budget (greedy decoding starts the same whatever the budget; a larger one goes on)."""
    return json.dumps({**json.loads(params_key), "max_tokens": max_tokens}, sort_keys=True)


class StoredRecord(NamedTuple):
    """A job's result record as stored: where it is, its bytes, and what they decode to."""

    stored: StoredResult
    data: bytes
    record: ResultRecord


def stored_record(store: ObjectStore, job: Job) -> StoredRecord | None:
    """Return the result record stored for this job, if there is one.

    A record stored under the job's id for another renter or prompt is not this job's: a devnet
    started again gives out job ids again.

    Raises:
        ResultIntegrityError: the indexed result's bytes do not match their recorded hash.
    """
    entry = JobIndex(store).lookup(job.job_id)
    if entry is None:
        return None
    stored = StoredResult(uri=store.uri_for(entry.result_key), sha256=entry.result_sha256)
    data = get_verified(store, stored.uri, stored.sha256)
    record = decode_record(data)
    if record.prompt_hash != job.prompt_hash or entry.renter.lower() != job.renter.lower():
        log.warning(
            "the result stored under this job id is another job's", extra={"job_id": job.job_id}
        )
        return None
    return StoredRecord(stored, data, record)


def earlier_answer(store: ObjectStore, job: Job) -> InferenceResult | None:
    """Return the answer an earlier run of this job already stored, if one did.

    Raises:
        ResultIntegrityError: the indexed result's bytes do not match their recorded hash.
    """
    found = stored_record(store, job)
    if found is None:
        return None
    return InferenceResult(
        text=found.record.output,
        prompt_tokens=found.record.prompt_tokens,
        completion_tokens=found.record.completion_tokens,
        cache_hit=found.record.cache_hit,
    )


def look_up_cache(
    cache: SemanticCache | None, store: ObjectStore, model: LocalModel, claimed: ClaimedJob
) -> InferenceResult | None:
    """Return the answer to reuse for this job, if there is one: the one an earlier run of the
    job stored (so a re-run after a crash writes no second result), else a cached answer to its
    prompt that fits its token budget (looked up once the prompt is known: a run started at the
    renter's handshake learns it in the infer step).
    """
    earlier = earlier_answer(store, claimed.job)
    if earlier is not None:
        log.info("answer stored by an earlier run", extra={"job_id": claimed.job.job_id})
        return earlier
    if claimed.prompt is None:
        return None
    return _cached_answer(cache, model, claimed, cache_params_key(), claimed.job.max_tokens)


def take_request(
    cache: SemanticCache | None,
    model: LocalModel,
    claimed: ClaimedJob,
    cached: InferenceResult | None,
    await_request: Callable[[], tuple[bytes, float] | None],
) -> tuple[ClaimedJob, InferenceResult | None] | None:
    """The infer step of a run started at the renter's handshake: wait (``await_request``) for
    the renter's request, its prompt and the Unix time it came; return the job with that prompt
    and the answer to reuse (``cached``, an earlier run's, else the cache's for the prompt, as
    the cache lookup step looks up a job whose prompt it has), or None when no request came.

    Raises:
        ResultIntegrityError: the request's prompt does not match the job's prompt hash.
        JobRejected: the prompt is not UTF-8 text (``prompt_invalid``).
    """
    request = await_request()
    if request is None:
        return None
    claimed = attach_prompt(claimed, *request)
    if cached is None:
        cached = _cached_answer(cache, model, claimed, cache_params_key(), claimed.job.max_tokens)
    return claimed, cached


def _cached_answer(
    cache: SemanticCache | None,
    model: LocalModel,
    claimed: ClaimedJob,
    params_key: str,
    max_tokens: int,
) -> InferenceResult | None:
    if cache is None:
        return None
    hit = cache.lookup(
        model.sha256,
        claimed.prompt,
        params_key,
        cut_answer_key(params_key, max_tokens),
        max_completion_tokens=max_tokens,
    )
    if hit is None:
        return None
    log.info(
        "cache hit",
        extra={
            "job_id": claimed.job.job_id,
            "kind": hit.kind,
            "similarity": round(hit.similarity, 4),
        },
    )
    return InferenceResult(
        text=hit.answer_text,
        prompt_tokens=0,
        completion_tokens=hit.completion_tokens,
        cache_hit=True,
    )


def infer(
    engines: EnginePool,
    cache: SemanticCache | None,
    model: LocalModel,
    claimed: ClaimedJob,
    cached: InferenceResult | None,
    streams: JobStreams | None = None,
    progress: Callable[[int], None] | None = None,
    cache_fills: list[Callable[[], None]] | None = None,
) -> InferenceResult:
    """Answer the job: the cached answer if there is one, else llama.cpp, filling the cache
    (after a streamed turn has ended; a failed cache write is logged and the job goes on).

    ``progress`` is told the number of tokens generated so far after each piece. Given
    ``cache_fills``, the cache writes are appended to it for the caller to run once it has
    released the GPU (a write takes ~0.27 s at 1M entries), instead of run at once.

    With ``streams`` holding a renter connected to the job through the API, its turns are
    answered with its sampling parameters, every piece is sent to it as it is generated, and a
    turn it cancels ends before the next token; the job is billed for the tokens sent.

    Raises:
        JobRejected: the prompt plus max_tokens does not fit the model's context window.
    """
    stream = streams.get(claimed.job.job_id) if streams is not None else None
    if stream is not None:
        return _answer_stream(
            engines.engine_for(model), cache, model, claimed, cached, stream, progress, cache_fills
        )
    if cached is not None:
        return cached
    params = SamplingParams(
        max_tokens=claimed.job.max_tokens, temperature=DETERMINISTIC_TEMPERATURE
    )
    result, finish = _generate(
        engines.engine_for(model),
        prompt_messages(claimed.prompt),
        params,
        _reporting(lambda _: True, progress),
    )
    _now_or_later(partial(_fill_cache, cache, model, claimed, result, params, finish), cache_fills)
    return result


def _answer_stream(
    engine: LlamaEngine,
    cache: SemanticCache | None,
    model: LocalModel,
    claimed: ClaimedJob,
    cached: InferenceResult | None,
    stream: JobStream,
    progress: Callable[[int], None] | None,
    cache_fills: list[Callable[[], None]] | None,
) -> InferenceResult:
    results: list[InferenceResult] = []
    budget = claimed.job.max_tokens
    # The API may have started the first answer during the claim; it is used only if it is
    # exactly the generation this step would start, and is cancelled after the first turn.
    prestarted = stream.take_prestarted()
    for turn in stream.turns():
        fills_cache = False
        left = budget - sum(result.completion_tokens for result in results)
        max_tokens = max(1, min(turn.params.max_tokens, left))
        params = turn.params.model_copy(update={"max_tokens": max_tokens})
        # A turn sampled at temperature > 0 asks for a fresh draw: it neither takes nor leaves a
        # cached answer unless its renter allowed reuse (in its sampling parameters' own scope).
        reusable = answer_reusable(params.temperature, turn.allow_reuse)
        try:
            if left <= 0:
                result = InferenceResult(
                    text="", prompt_tokens=0, completion_tokens=0, cache_hit=False
                )
                finish = "length"
            elif (
                not results
                and reusable
                and (reused := _reusable_answer(cache, model, claimed, params, cached)) is not None
            ):
                stream.publish(TokenPiece(reused.text, reused.completion_tokens))
                # As the engine would report the same tokens: an answer filling the budget was cut.
                cut = reused.completion_tokens >= params.max_tokens
                result, finish = reused, "length" if cut else "stop"
            else:
                own = turn.messages is None
                messages = prompt_messages(claimed.prompt) if own else turn.messages
                early = None
                if prestarted is not None:
                    first, generation = prestarted
                    if (first.params, first.messages) == (params, tuple(messages)):
                        early = generation
                result, finish = _generate(
                    engine, messages, params, _reporting(stream.publish, progress), early
                )
                fills_cache = own and reusable and finish != "cancelled"
        except BaseException as exc:
            stream.fail(exc)
            raise
        finally:
            if prestarted is not None:
                prestarted[1].cancel()  # a no-op once used up
                prestarted = None
        stream.end_turn(result, finish)
        # After the turn's end: the renter's last chunk does not wait for an embedding and a
        # LanceDB write (a WebSocket session's next turn still does).
        if fills_cache:
            fill = partial(_fill_cache, cache, model, claimed, result, params, finish)
            _now_or_later(fill, cache_fills)
        results.append(result)
    if len(results) == 1:
        return results[0].model_copy(update={"asked_at": claimed.claim_started_at})
    timed = [result for result in results if result.ttft_ms is not None]
    return InferenceResult(
        text="\n\n".join(result.text for result in results),
        prompt_tokens=sum(result.prompt_tokens for result in results),
        completion_tokens=sum(result.completion_tokens for result in results),
        cache_hit=bool(results) and all(result.cache_hit for result in results),
        ttft_ms=timed[0].ttft_ms if timed else None,
        decode_tokens_per_s=timed[0].decode_tokens_per_s if timed else None,
        asked_at=claimed.claim_started_at,
    )


def _reusable_answer(
    cache: SemanticCache | None,
    model: LocalModel,
    claimed: ClaimedJob,
    params: SamplingParams,
    cached: InferenceResult | None,
) -> InferenceResult | None:
    """Return the answer already made for the job's own prompt with ``params``, if it fits."""
    if params == SamplingParams(max_tokens=params.max_tokens):
        # The cache lookup step already looked in the deterministic scope at the job's budget
        # (and for an earlier run's answer); a turn asking for fewer tokens may also take an
        # answer cut at its own budget.
        if cached is not None and cached.completion_tokens <= params.max_tokens:
            return cached
        if params.max_tokens >= claimed.job.max_tokens:
            return None
        return _cached_answer(cache, model, claimed, cache_params_key(), params.max_tokens)
    return _cached_answer(cache, model, claimed, cache_params_key(params), params.max_tokens)


def _reporting(
    publish: Callable[[TokenPiece], bool], progress: Callable[[int], None] | None
) -> Callable[[TokenPiece], bool]:
    """Wrap ``publish`` so ``progress`` hears the running token count of what was sent."""
    if progress is None:
        return publish
    sent = 0

    def publish_and_report(piece: TokenPiece) -> bool:
        nonlocal sent
        if not publish(piece):
            return False
        sent += piece.tokens
        progress(sent)
        return True

    return publish_and_report


def _generate(
    engine: LlamaEngine,
    messages: Sequence[dict[str, str]],
    params: SamplingParams,
    publish: Callable[[TokenPiece], bool],
    started_generation: Generation | None = None,
) -> tuple[InferenceResult, str]:
    """Generate one answer (or finish ``started_generation`` of it), handing each piece to
    ``publish`` until it returns False; return the answer as sent (text and tokens), with time
    to first token and decode speed, and why it ended.
    """
    started = time.perf_counter()
    generation = started_generation or engine.stream(messages, params)
    first_token_at: float | None = None
    pieces: list[str] = []
    tokens = 0
    finish = "cancelled"
    for piece in generation:
        if first_token_at is None and piece.tokens:
            first_token_at = time.perf_counter()
        if not publish(piece):
            break
        pieces.append(piece.text)
        tokens += piece.tokens
    else:
        finish = generation.finish_reason or "stop"
    ended = time.perf_counter()
    decode_s = 0.0 if first_token_at is None else ended - first_token_at
    result = InferenceResult(
        text="".join(pieces),
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=tokens,
        cache_hit=False,
        ttft_ms=None if first_token_at is None else (first_token_at - started) * 1000,
        decode_tokens_per_s=(tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else None,
    )
    return result, finish


def _now_or_later(work: Callable[[], None], later: list[Callable[[], None]] | None) -> None:
    if later is None:
        work()
    else:
        later.append(work)


def _fill_cache(
    cache: SemanticCache | None,
    model: LocalModel,
    claimed: ClaimedJob,
    result: InferenceResult,
    params: SamplingParams,
    finish: str,
) -> None:
    """Store the answer for later jobs, one cut at its budget for that budget only; a failed
    write is logged, not raised: the job's own answer is made and paid for whether or not the
    cache keeps a copy."""
    if cache is None:
        return
    params_key = cache_params_key(params)
    if finish == "length":
        params_key = cut_answer_key(params_key, params.max_tokens)
    try:
        cache.store(
            model.sha256,
            claimed.prompt,
            params_key,
            result.text,
            result.completion_tokens,
            renter=claimed.job.renter,
        )
    except TransientError as exc:
        log.error("cache write failed", extra={"job_id": claimed.job.job_id, "error": str(exc)})
