"""``GET /v1/models``: the models this host serves, with its on-chain price per output token."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from fabstir.api.dependencies import Context
from fabstir.api.schemas import ModelCard, ModelList
from fabstir.api.services import ApiContext
from fabstir.chain import ETH

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(ctx: Context) -> ModelList:
    """List served models and their prices by payment token (only those offered on chain)."""
    return await run_in_threadpool(_models, ctx)


def _models(ctx: ApiContext) -> ModelList:
    chain = ctx.services.chain
    tokens = {"ETH": ETH, **chain.deployment.payment_tokens}
    cards = []
    for name in ctx.services.catalog.names:
        prices = {
            symbol: chain.price_of(chain.address, name, token) for symbol, token in tokens.items()
        }
        cards.append(
            ModelCard(
                id=name,
                created=0,
                owned_by=chain.address,
                price_per_token={symbol: price for symbol, price in prices.items() if price},
            )
        )
    if ctx.services.embedder is not None:
        cards.append(
            ModelCard(
                id=ctx.services.embedding_model,
                created=0,
                owned_by=chain.address,
                price_per_token={},
            )
        )
    return ModelList(data=cards)
