"""Object storage over fsspec, content addressing and result records."""

from fabstir.storage.addressing import content_key, get_verified, put_content, sha256_hex
from fabstir.storage.records import ResultRecord, decode_record, encode_record
from fabstir.storage.store import ObjectStore

__all__ = [
    "ObjectStore",
    "ResultRecord",
    "content_key",
    "decode_record",
    "encode_record",
    "get_verified",
    "put_content",
    "sha256_hex",
]
