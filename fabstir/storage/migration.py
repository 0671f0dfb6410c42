"""Copy every object from one store to another, verifying each copy, so a crashed run can resume.

Each object is written atomically and read back before it counts as copied; an object whose copy
already holds the source's bytes is skipped. So re-running after a crash copies only what is
missing or wrong, and running twice changes nothing. The source is never modified. Objects travel
and are hashed in chunks, so a model file of many gigabytes never sits in memory.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from fabstir.errors import FabstirError, IntegrityError, ObjectMissing
from fabstir.settings import Settings
from fabstir.storage.store import ObjectStore

# A content address: the sha2-256 multihash prefix and the digest (see addressing.py).
_CONTENT_NAME = re.compile(r"^1220([0-9a-f]{64})$")
# Read size while copying and hashing: large enough that S3 reads are few, small enough to hold.
CHUNK_BYTES = 8 * 1024 * 1024
# A partial write at the target older than this was left by a killed run, not one in progress.
ABANDONED_AFTER_S = 3600.0

log = logging.getLogger(__name__)

Outcome = Literal["copied", "skipped", "failed"]


@dataclass(frozen=True)
class MigrationPart:
    """One backend to copy: results and job index, cache tables, or model files."""

    name: str
    source_url: str
    target_url: str


def plan_migration(
    settings: Settings,
    target_storage_url: str,
    target_cache_url: str | None = None,
    target_models_url: str | None = None,
) -> list[MigrationPart]:
    """Return the parts to copy from this node's backends to the targets that are given.

    Storage holds prompts, results and the job index; the cache is the LanceDB directory (its
    files are immutable once written, so a file-by-file copy of a quiet table is consistent);
    models are the downloaded model files and the embedding model.
    """
    assert settings.storage.url is not None and settings.cache.uri is not None
    parts = [MigrationPart("storage", settings.storage.url, target_storage_url)]
    if target_cache_url:
        parts.append(MigrationPart("cache", _as_url(settings.cache.uri), target_cache_url))
    if target_models_url:
        parts.append(
            MigrationPart("models", f"file://{settings.home / 'models'}", target_models_url)
        )
    for part in parts:
        if part.source_url.rstrip("/") == part.target_url.rstrip("/"):
            raise ValueError(f"{part.name}: source and target are the same URL {part.target_url}")
    return parts


def _as_url(location: str) -> str:
    return location if "://" in location else f"file://{location}"


@dataclass(frozen=True)
class MigrationCounts:
    part: str
    copied: int
    skipped: int
    failed: int
    failed_keys: tuple[str, ...] = ()
    abandoned_removed: int = 0  # partial writes of killed runs, removed from the target


def copy_objects(
    source: ObjectStore,
    target: ObjectStore,
    *,
    part: str = "objects",
    on_object: Callable[[str, Outcome], None] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    abandoned_after_s: float = ABANDONED_AFTER_S,
) -> MigrationCounts:
    """Copy every object of ``source`` that ``target`` lacks or holds with other bytes.

    A copy counts only after it is read back from ``target`` with the source's SHA-256; one
    that is not is reported as failed (and left for the next run to replace), not raised. An
    object named by its content address whose bytes do not match it is not written at all.
    Partial writes a killed run left at the target, begun over ``abandoned_after_s`` ago, are
    removed first.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be at least 1, got {chunk_bytes}")
    abandoned = target.remove_abandoned_writes(abandoned_after_s)
    counts: dict[Outcome, int] = {"copied": 0, "skipped": 0, "failed": 0}
    failed: list[str] = []
    for key in source.list():
        outcome = _copy_one(source, target, key, chunk_bytes)
        counts[outcome] += 1
        if outcome == "failed":
            failed.append(key)
        if on_object is not None:
            on_object(key, outcome)
    log.info("migration part done", extra={"part": part, "abandoned": abandoned, **counts})
    return MigrationCounts(
        part=part, failed_keys=tuple(failed), abandoned_removed=abandoned, **counts
    )


def check_migrated(counts: list[MigrationCounts]) -> None:
    """Raise unless every object of every part arrived intact.

    Raises:
        IntegrityError: some objects failed to copy or to verify; re-run to retry them.
    """
    failed = {c.part: list(c.failed_keys[:5]) for c in counts if c.failed}
    if failed:
        raise IntegrityError(
            "objects failed to migrate; re-run to retry them", code="migration_failed", **failed
        )


def _copy_one(source: ObjectStore, target: ObjectStore, key: str, chunk_bytes: int) -> Outcome:
    named = _CONTENT_NAME.match(key.rsplit("/", 1)[-1])
    address = named.group(1) if named else None
    try:
        held = _digest_at(target, key, chunk_bytes)
        if held is not None:
            wanted = bytes.fromhex(address) if address else _digest_at(source, key, chunk_bytes)
            if held == wanted:
                return "skipped"
        digest = hashlib.sha256()
        target.put_chunks(key, _hashed(source.get_chunks(key, chunk_bytes), digest, key, address))
        if _digest_at(target, key, chunk_bytes) != digest.digest():
            log.error("copy does not match its source", extra={"key": key})
            return "failed"
    except FabstirError as exc:
        log.error("object not copied", extra={"key": key, "error": str(exc)})
        return "failed"
    return "copied"


def _hashed(
    chunks: Iterator[bytes], digest: hashlib._Hash, key: str, address: str | None
) -> Iterator[bytes]:
    """Yield ``chunks``, hashing them; end by raising if they do not match their ``address``,
    so that the write they feed is abandoned.

    Raises:
        IntegrityError: the object's bytes do not hash to its content address.
    """
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if address is not None and digest.hexdigest() != address:
        raise IntegrityError(
            "source object does not match its content address",
            code="content_address_mismatch",
            key=key,
        )


def _digest_at(store: ObjectStore, key: str, chunk_bytes: int) -> bytes | None:
    digest = hashlib.sha256()
    try:
        for chunk in store.get_chunks(key, chunk_bytes):
            digest.update(chunk)
    except ObjectMissing:
        return None
    return digest.digest()
