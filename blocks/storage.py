from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks._clients import client_once
from fabstir.settings import Settings, StorageSettings
from fabstir.storage import ObjectStore, open_store


class StorageBlock(Block):
    """Where prompts, results and the job index live (an fsspec URL, S3 options for s3://)."""

    _block_type_name = "Fabstir Storage"

    url: str = Field(description="fsspec base URL, e.g. file:///srv/fabstir or s3://bucket/prefix.")
    s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint for s3:// URLs.")
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    attempts: int = Field(default=3, ge=1, description="Tries per call before an outage is raised.")

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageBlock:
        storage = settings.storage
        assert storage.url is not None  # filled from home by Settings
        return cls(
            url=storage.url,
            s3_endpoint_url=storage.s3_endpoint_url,
            s3_access_key_id=storage.s3_access_key_id,
            s3_secret_access_key=storage.s3_secret_access_key,
            attempts=storage.attempts,
        )

    def storage_settings(self) -> StorageSettings:
        return StorageSettings(
            url=self.url,
            s3_endpoint_url=self.s3_endpoint_url,
            s3_access_key_id=self.s3_access_key_id,
            s3_secret_access_key=self.s3_secret_access_key,
            attempts=self.attempts,
        )

    def get_client(self, url: str | None = None) -> ObjectStore:
        """Return the store at ``url`` (default: this block's URL) with this block's S3 options."""
        url = url or self.url
        secrets = "".join(
            s.get_secret_value() for s in (self.s3_access_key_id, self.s3_secret_access_key) if s
        )
        return client_once(
            "storage",
            self.model_dump_json() + url + secrets,
            lambda: open_store(self.storage_settings(), url),
        )
