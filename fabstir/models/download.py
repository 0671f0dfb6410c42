"""Download a model through fsspec, hashing while it streams, resuming where a download stopped."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec

from fabstir.errors import ModelIntegrityError, ObjectMissing, TransientError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
# Bytes per ranged request: what an interruption can lose, and what each request fetches.
_BLOCKS_PER_REQUEST = 8

# Called with (bytes so far, total bytes or None when the source does not say).
ProgressCallback = Callable[[int, int | None], None]


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def partial_path(target: Path) -> Path:
    """Return where the unverified bytes of ``target`` accumulate until they hash right."""
    return target.with_name(target.name + ".part")


def download_verified(
    uri: str,
    target: Path,
    sha256: str,
    *,
    progress: ProgressCallback | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    storage_options: dict[str, Any] | None = None,
) -> Path:
    """Copy ``uri`` to ``target``, which appears only once its bytes hash to ``sha256``.

    Bytes go to ``target.part`` first. If that file exists from an interrupted download, its bytes
    are hashed and the source is read from that offset on (an HTTP Range request, a ranged S3
    GET, a seek in a local file), so an interrupted download resumes instead of restarting.
    ``storage_options`` go to fsspec (e.g. an S3 endpoint and credentials).

    Raises:
        ModelIntegrityError: the bytes do not hash to ``sha256``; the partial file is deleted.
        ObjectMissing: nothing exists at ``uri``.
        TransientError: the source failed mid-way; the bytes so far are kept for a resume.
    """
    partial = partial_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    offset = _hash_existing(partial, digest)
    try:
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        total = fs.size(path)
        if total is not None and offset > total:
            # Left over from other bytes under the same name: start again.
            partial.unlink()
            digest, offset = hashlib.sha256(), 0
        if progress is not None:
            progress(offset, total)
        if total is None or offset < total:
            if offset:
                log.info("resuming model download", extra={"uri": uri, "offset": offset})
            block_bytes = chunk_bytes * _BLOCKS_PER_REQUEST
            with (
                fs.open(path, "rb", block_size=block_bytes) as source,
                partial.open("ab") as sink,
            ):
                source.seek(offset)
                while chunk := source.read(chunk_bytes):
                    digest.update(chunk)
                    sink.write(chunk)
                    offset += len(chunk)
                    if progress is not None:
                        progress(offset, total)
                sink.flush()
                os.fsync(sink.fileno())
    except FileNotFoundError as exc:
        raise ObjectMissing(
            "no model file at the URI", code="model_source_missing", uri=uri
        ) from exc
    except _transport_errors() as exc:
        raise TransientError(
            "model download interrupted", code="model_download_failed", uri=uri, offset=offset
        ) from exc
    actual = digest.hexdigest()
    if actual != sha256:
        partial.unlink(missing_ok=True)
        raise ModelIntegrityError(
            "downloaded model does not match its hash", uri=uri, expected=sha256, actual=actual
        )
    os.replace(partial, target)
    log.info("model downloaded", extra={"uri": uri, "path": str(target), "bytes": offset})
    return target


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Return what the fsspec backends raise when a transfer breaks (not all are OSErrors)."""
    errors: list[type[BaseException]] = [OSError]
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:
        pass
    try:
        import botocore.exceptions

        errors.append(botocore.exceptions.BotoCoreError)
    except ImportError:
        pass
    return tuple(errors)


def _hash_existing(partial: Path, digest: hashlib._Hash) -> int:
    try:
        handle = partial.open("rb")
    except FileNotFoundError:
        return 0
    size = 0
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size
