from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from blocks._clients import client_once
from blocks.chain import ChainBlock
from fabstir.models import ChainModelRegistry, EnginePool, ModelDiskCache, ModelManager
from fabstir.settings import (
    EngineSettings,
    ModelSpec,
    ModelStoreSettings,
    Settings,
    StorageSettings,
)
from fabstir.storage import storage_options


class EngineBlock(Block):
    """The models this host serves and the llama.cpp engine that runs them."""

    _block_type_name = "Fabstir Engine"

    engine: EngineSettings = Field(default_factory=EngineSettings)
    models: list[ModelSpec] = Field(default_factory=list)
    store: ModelStoreSettings = Field(description="Where verified model files are kept.")
    chain: ChainBlock = Field(description="The chain whose ModelRegistry resolves model ids.")
    storage: StorageSettings = Field(description="Endpoint and keys for s3:// model URIs.")
    price_per_token_wei: int = Field(gt=0, description="Our price per output token, in wei.")

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineBlock:
        return cls(
            engine=settings.engine,
            models=settings.host.models,
            store=settings.models,
            chain=ChainBlock.from_settings(settings),
            storage=settings.storage,
            price_per_token_wei=settings.host.price_per_token_wei,
        )

    def get_disk(self) -> ModelDiskCache:
        # One per directory, so the engine's pins protect the files the manager evicts from.
        assert self.store.dir is not None
        return client_once(
            "model-disk",
            self.store.model_dump_json(),
            lambda: ModelDiskCache(Path(self.store.dir), self.store.disk_budget_bytes),
        )

    def get_catalog(self) -> ModelManager:
        return client_once(
            "models",
            self.model_dump_json(),
            lambda: ModelManager(
                ChainModelRegistry(self.chain.get_client()),
                self.get_disk(),
                [spec.id for spec in self.models],
                source_options={"s3": storage_options(self.storage, "s3://")},
                registry_ttl_s=self.store.registry_ttl_s,
            ),
        )

    def get_client(self) -> EnginePool:
        return client_once(
            "engine",
            self.engine.model_dump_json() + self.store.model_dump_json(),
            lambda: EnginePool(self.engine, self.get_disk()),
        )
