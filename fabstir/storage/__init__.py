"""Object storage over fsspec, content addressing, result records, job index and migration."""

from fabstir.storage.addressing import content_key, get_verified, put_content, sha256_hex
from fabstir.storage.job_index import JobEntry, JobIndex
from fabstir.storage.migration import (
    MigrationCounts,
    MigrationPart,
    check_migrated,
    copy_objects,
    plan_migration,
)
from fabstir.storage.records import ResultRecord, decode_record, encode_record
from fabstir.storage.store import ObjectStore, open_store, storage_options

__all__ = [
    "JobEntry",
    "JobIndex",
    "MigrationCounts",
    "MigrationPart",
    "ObjectStore",
    "ResultRecord",
    "check_migrated",
    "content_key",
    "copy_objects",
    "decode_record",
    "encode_record",
    "get_verified",
    "open_store",
    "plan_migration",
    "put_content",
    "sha256_hex",
    "storage_options",
]
