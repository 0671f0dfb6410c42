"""``POST /v1/embeddings``: MiniLM-L6-v2 vectors for a job's renter (the cache's own embedder)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from fabstir.api.dependencies import Caller, Context
from fabstir.api.schemas import EmbeddingRequest
from fabstir.errors import JobRejected

router = APIRouter(tags=["embeddings"])


@router.post("/v1/embeddings")
async def embeddings(
    body: EmbeddingRequest,
    grant: Caller,
    ctx: Context,
) -> dict[str, object]:
    """Embed up to 96 texts; free for a renter holding a token, within its rate limit."""
    embedder = ctx.services.embedder
    if embedder is None or body.model != ctx.services.embedding_model:
        raise JobRejected(
            "this host serves no such embedding model", code="model_not_served", param="model"
        )
    texts = body.texts()
    vectors = await run_in_threadpool(embedder.embed, texts)
    # The embedder does not report its token counts; whitespace words stand in for them.
    tokens = sum(len(text.split()) for text in texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": [float(x) for x in vector]}
            for i, vector in enumerate(vectors)
        ],
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
