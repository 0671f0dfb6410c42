"""OpenAI's ``POST /v1/chat/completions`` and ``POST /v1/completions``, each answering one job."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from fabstir.api.answers import (
    Answer,
    ChunkFormat,
    Kind,
    check_budget,
    check_job,
    check_prompt,
    collect,
    sse_frames,
    start_answer,
    usage_of,
)
from fabstir.api.dependencies import Caller, Context
from fabstir.api.schemas import ChatCompletionRequest, CompletionRequest
from fabstir.api.services import ApiContext
from fabstir.domain import chat_prompt

router = APIRouter(tags=["completions"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    grant: Caller,
    ctx: Context,
) -> JSONResponse | StreamingResponse:
    """Answer the job's chat; ``messages`` must hash (``chat_prompt``) to its prompt_hash."""
    job = await check_job(ctx, grant, body.model)
    params = body.sampling(job.max_tokens)
    check_budget(job, params)
    document = chat_prompt([message.turn() for message in body.messages])
    check_prompt(job, document, "messages")
    answer = await start_answer(ctx, job, document, params, allow_reuse=body.allow_cache_reuse)
    return await _respond(ctx, answer, "chat", body.model, body.stream, body.include_usage)


@router.post("/v1/completions", response_model=None)
async def completions(
    body: CompletionRequest,
    grant: Caller,
    ctx: Context,
) -> JSONResponse | StreamingResponse:
    """Answer the job's prompt; its UTF-8 bytes must hash to the job's prompt_hash."""
    job = await check_job(ctx, grant, body.model)
    params = body.sampling(job.max_tokens)
    check_budget(job, params)
    document = body.text().encode()
    check_prompt(job, document, "prompt")
    answer = await start_answer(ctx, job, document, params, allow_reuse=body.allow_cache_reuse)
    return await _respond(ctx, answer, "text", body.model, body.stream, body.include_usage)


async def _respond(
    ctx: ApiContext, answer: Answer, kind: Kind, model: str, stream: bool, include_usage: bool
) -> JSONResponse | StreamingResponse:
    chunks = ChunkFormat(kind, model, include_usage)
    if stream:
        return StreamingResponse(
            sse_frames(ctx, answer, chunks), media_type="text/event-stream", headers=SSE_HEADERS
        )
    ended = await collect(ctx, answer)
    text = "".join(answer.pieces)
    if kind == "chat":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": ended.finish_reason,
        }
        obj = "chat.completion"
    else:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": ended.finish_reason}
        obj = "text_completion"
    return JSONResponse(
        {
            "id": chunks.id,
            "object": obj,
            "created": chunks.created,
            "model": model,
            "system_fingerprint": None,
            "choices": [choice],
            "usage": usage_of(ended.result),
        }
    )
