from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from blocks._clients import client_once
from fabstir.cache import Embedder, SemanticCache
from fabstir.settings import Settings


class CacheBlock(Block):
    """The semantic answer cache (a LanceDB directory) and its embedding model."""

    _block_type_name = "Fabstir Cache"

    enabled: bool = True
    uri: str = Field(description="LanceDB directory or s3:// URI.")
    embedding_model_path: str
    similarity_threshold: float
    ttl_s: float
    max_entries: int
    index_min_rows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> CacheBlock:
        cache = settings.cache
        return cls(
            enabled=cache.enabled,
            uri=str(cache.uri),
            embedding_model_path=str(cache.embedding_model_path),
            similarity_threshold=cache.similarity_threshold,
            ttl_s=cache.ttl_s,
            max_entries=cache.max_entries,
            index_min_rows=cache.index_min_rows,
        )

    def get_client(self) -> SemanticCache | None:
        if not self.enabled:
            return None
        return client_once("cache", self.model_dump_json(), self._build)

    def _build(self) -> SemanticCache:
        embedder = client_once(
            "embedder", self.embedding_model_path, lambda: Embedder(Path(self.embedding_model_path))
        )
        return SemanticCache(
            self.uri,
            embedder,
            self.similarity_threshold,
            ttl_s=self.ttl_s,
            max_entries=self.max_entries,
            index_min_rows=self.index_min_rows,
        )
