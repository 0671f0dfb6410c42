from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from blocks._clients import client_once
from fabstir.settings import Settings
from fabstir.storage import ObjectStore


class StorageBlock(Block):
    """Where prompts and results live (an fsspec URL)."""

    _block_type_name = "Fabstir Storage"

    url: str = Field(description="fsspec base URL, e.g. file:///srv/fabstir or s3://bucket/prefix.")

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageBlock:
        assert settings.storage.url is not None  # filled from home by Settings
        return cls(url=settings.storage.url)

    def get_client(self) -> ObjectStore:
        return client_once("storage", self.model_dump_json(), lambda: ObjectStore(self.url))
