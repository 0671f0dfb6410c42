"""Result records as deterministic CBOR: the same record always encodes to the same bytes."""

from __future__ import annotations

from typing import Any

import cbor2
from pydantic import BaseModel, ConfigDict

RESULT_SCHEMA_VERSION = 1


class ResultRecord(BaseModel):
    """What a host delivers for a job; its CBOR bytes are what the chain's result hash covers."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = RESULT_SCHEMA_VERSION
    job_id: int
    model_id: str
    model_sha256: str
    prompt_hash: str
    output: str
    prompt_tokens: int
    completion_tokens: int
    cache_hit: bool


def encode_record(record: ResultRecord) -> bytes:
    return cbor2.dumps(record.model_dump(), canonical=True)


def decode_record(data: bytes) -> ResultRecord:
    """Decode a result record.

    Raises:
        ValueError: the bytes are not a record of a schema version this node understands.
    """
    fields: Any = cbor2.loads(data)
    if not isinstance(fields, dict) or fields.get("schema_version") != RESULT_SCHEMA_VERSION:
        version = fields.get("schema_version") if isinstance(fields, dict) else None
        raise ValueError(f"unsupported result record schema version {version!r}")
    return ResultRecord.model_validate(fields)
