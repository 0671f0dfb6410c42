"""Content addressing: an object's key is derived from the SHA-256 of its bytes."""

from __future__ import annotations

import hashlib

from fabstir.errors import ResultIntegrityError
from fabstir.storage.store import ObjectStore

# Multihash prefix for sha2-256 (code 0x12) with a 32-byte digest (0x20).
_SHA256_MULTIHASH_PREFIX = "1220"


def sha256_hex(data: bytes) -> str:
    """Return the 0x-prefixed SHA-256 of ``data``, the form recorded on chain."""
    return "0x" + hashlib.sha256(data).hexdigest()


def content_key(data: bytes, namespace: str) -> str:
    return f"{namespace}/{_SHA256_MULTIHASH_PREFIX}{hashlib.sha256(data).hexdigest()}"


def put_content(store: ObjectStore, data: bytes, namespace: str) -> tuple[str, str]:
    """Store ``data`` at its content address (once); return ``(uri, sha256_hex)``."""
    key = content_key(data, namespace)
    if not store.exists(key):
        store.put(key, data)
    return store.uri_for(key), sha256_hex(data)


def get_verified(store: ObjectStore, uri: str, expected_sha256: str) -> bytes:
    """Read the object at ``uri`` and check it against ``expected_sha256``.

    Raises:
        ResultIntegrityError: the bytes do not hash to ``expected_sha256``.
        ObjectMissing: nothing is stored at ``uri``.
    """
    data = store.get(store.key_of(uri))
    actual = sha256_hex(data)
    if actual != expected_sha256.lower():
        raise ResultIntegrityError(
            "stored bytes do not match their hash", uri=uri, expected=expected_sha256, actual=actual
        )
    return data
