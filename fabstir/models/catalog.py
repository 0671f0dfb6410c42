"""The models this host serves: resolve a job's model id and hand out verified local files."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path

import fsspec

from fabstir.chain.contracts import model_id_of
from fabstir.domain import LocalModel
from fabstir.errors import JobRejected, ModelIntegrityError, TransientError
from fabstir.settings import ModelSpec

log = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class ModelCatalog:
    """Map on-chain model ids to this host's model files, verifying every file before use."""

    def __init__(self, specs: list[ModelSpec], download_dir: Path) -> None:
        self._by_chain_id = {model_id_of(spec.id): spec for spec in specs}
        self._download_dir = download_dir
        # (path, size, mtime_ns) of files whose hash already matched in this process.
        self._verified: dict[str, tuple[int, int]] = {}

    @property
    def names(self) -> list[str]:
        return [spec.id for spec in self._by_chain_id.values()]

    def resolve(self, chain_model_id: str) -> ModelSpec:
        """Return the spec of a model this host serves.

        Raises:
            JobRejected: this host does not serve the model.
        """
        spec = self._by_chain_id.get(chain_model_id.lower())
        if spec is None:
            raise JobRejected(
                "model not served by this host", code="model_not_served", model_id=chain_model_id
            )
        return spec

    def fetch(self, spec: ModelSpec) -> LocalModel:
        """Return a local copy of the model whose bytes match ``spec.sha256``.

        Raises:
            ModelIntegrityError: the file's bytes do not match the expected hash.
            TransientError: a remote copy could not be downloaded.
        """
        protocol = fsspec.utils.get_protocol(spec.uri)
        path = (
            Path(spec.uri.removeprefix("file://")) if protocol == "file" else self._download(spec)
        )
        self._verify(path, spec)
        return LocalModel(name=spec.id, path=str(path), sha256=spec.sha256)

    def _verify(self, path: Path, spec: ModelSpec) -> None:
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise ModelIntegrityError(
                "model file is missing", model=spec.id, path=str(path)
            ) from exc
        fingerprint = (stat.st_size, stat.st_mtime_ns)
        if self._verified.get(str(path)) == fingerprint:
            return
        actual = file_sha256(path)
        if actual != spec.sha256:
            raise ModelIntegrityError(
                "model file does not match its hash",
                model=spec.id,
                path=str(path),
                expected=spec.sha256,
                actual=actual,
            )
        self._verified[str(path)] = fingerprint

    def _download(self, spec: ModelSpec) -> Path:
        target = self._download_dir / f"{spec.sha256}.gguf"
        if target.exists():
            return target
        self._download_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.part-{uuid.uuid4().hex}")
        digest = hashlib.sha256()
        try:
            with fsspec.open(spec.uri, "rb") as source, partial.open("wb") as sink:
                while chunk := source.read(_CHUNK_BYTES):
                    digest.update(chunk)
                    sink.write(chunk)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise TransientError("model download failed", model=spec.id, uri=spec.uri) from exc
        if digest.hexdigest() != spec.sha256:
            partial.unlink()
            raise ModelIntegrityError(
                "downloaded model does not match its hash",
                model=spec.id,
                uri=spec.uri,
                expected=spec.sha256,
                actual=digest.hexdigest(),
            )
        os.replace(partial, target)
        log.info("model downloaded", extra={"model": spec.id, "path": str(target)})
        return target
