from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from blocks._clients import client_once
from fabstir.models import EnginePool, ModelCatalog
from fabstir.settings import EngineSettings, ModelSpec, Settings


class EngineBlock(Block):
    """The models this host serves and the llama.cpp engine that runs them."""

    _block_type_name = "Fabstir Engine"

    engine: EngineSettings = Field(default_factory=EngineSettings)
    models: list[ModelSpec] = Field(default_factory=list)
    download_dir: str = Field(description="Where downloaded model files are kept.")
    price_per_token_wei: int = Field(gt=0, description="Our price per output token, in wei.")

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineBlock:
        return cls(
            engine=settings.engine,
            models=settings.host.models,
            download_dir=str(settings.home / "models"),
            price_per_token_wei=settings.host.price_per_token_wei,
        )

    def get_catalog(self) -> ModelCatalog:
        return client_once(
            "catalog",
            self.model_dump_json(),
            lambda: ModelCatalog(self.models, Path(self.download_dir)),
        )

    def get_client(self) -> EnginePool:
        return client_once("engine", self.engine.model_dump_json(), lambda: EnginePool(self.engine))
