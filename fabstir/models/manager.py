"""The models this host serves: resolve ids through the registry, keep verified copies, update.

A job's model id resolves to the registry's record. The first time, the file is downloaded before
the job runs. When the registry later points the id at new bytes, the new version downloads and
verifies in the background while new jobs keep getting the old one; once verified, new jobs switch
to it in one step, and jobs that already hold the old ``LocalModel`` finish on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from fabstir.chain.contracts import model_id_of
from fabstir.domain import LocalModel
from fabstir.errors import FabstirError, JobRejected, ModelIntegrityError, TransientError
from fabstir.models.disk import ModelDiskCache
from fabstir.models.download import ProgressCallback, download_verified, file_sha256
from fabstir.models.registry import ModelRecord, ModelRegistryReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelStatus:
    """The outcome of checking one served model: ``ok`` or why it cannot be advertised."""

    name: str
    model_id: str
    sha256: str | None
    ok: bool
    problem: str | None = None


def to_model_id(name_or_id: str) -> str:
    """Return the on-chain id of a model given by name or already as a 0x id."""
    if name_or_id.startswith("0x") and len(name_or_id) == 66:
        return name_or_id.lower()
    return model_id_of(name_or_id)


class ModelManager:
    """Serve the models named in ``served`` from verified files in ``disk``."""

    def __init__(
        self,
        registry: ModelRegistryReader,
        disk: ModelDiskCache,
        served: Sequence[str],
        *,
        source_options: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """``source_options`` maps a URL protocol (``"s3"``) to the fsspec options it needs."""
        self._registry = registry
        self._source_options = dict(source_options or {})
        self.disk = disk
        self._served = {model_id_of(name): name for name in served}
        self._in_force: dict[str, ModelRecord] = {}
        # sha256 -> (size, mtime_ns) of files whose hash matched in this process.
        self._verified: dict[str, tuple[int, int]] = {}
        self._updates: dict[str, threading.Thread] = {}
        self._lock = threading.RLock()

    @property
    def names(self) -> list[str]:
        return list(self._served.values())

    def resolve(self, model_id: str) -> ModelRecord:
        """Return the record new jobs for ``model_id`` run on.

        Raises:
            JobRejected: this host does not serve the model (``model_not_served``), the registry
                does not know it (``unknown_model``) or has deactivated it (``model_inactive``).
        """
        model_id = model_id.lower()
        if model_id not in self._served:
            raise JobRejected(
                "model not served by this host", code="model_not_served", model_id=model_id
            )
        latest = self._registry.model(model_id)
        if not latest.active:
            raise JobRejected("model is deactivated", code="model_inactive", model_id=model_id)
        with self._lock:
            current = self._in_force.get(model_id)
            if current is None or current.sha256 == latest.sha256:
                return latest
            if self.disk.get(latest.sha256) is not None:
                self._in_force[model_id] = latest
                return latest
            self._start_update(latest)
            return current

    def fetch(self, record: ModelRecord, progress: ProgressCallback | None = None) -> LocalModel:
        """Return a verified local copy of ``record`` (and of its base model, for an adapter).

        Raises:
            ModelIntegrityError: the bytes do not match the record's SHA-256.
            ObjectMissing: nothing is stored at the record's URI.
            TransientError: the download was interrupted (it resumes on the next call).
        """
        base = None
        if record.base_id is not None:
            base = self.fetch(self._registry.model(record.base_id), progress)
        path = self.disk.get(record.sha256)
        if path is None:
            path = self._download(record, progress)
        self._check(record, path)
        with self._lock:
            # A newer version takes over in resolve() or _update(), never half-way through.
            self._in_force.setdefault(record.id, record)
        return LocalModel(name=record.name, path=str(path), sha256=record.sha256, base=base)

    def pull(self, name_or_id: str, progress: ProgressCallback | None = None) -> LocalModel:
        """Download and verify a served model now (``fabstir-node models pull``)."""
        return self.fetch(self.resolve(to_model_id(name_or_id)), progress)

    def remove(self, name_or_id: str) -> bool:
        """Delete the cached file of a model's current registry version; False if none was cached.

        Raises:
            TransientError: the model is loaded (``code="model_in_use"``).
        """
        record = self._registry.model(to_model_id(name_or_id))
        with self._lock:
            self._verified.pop(record.sha256, None)
            if self._in_force.get(record.id) == record:
                del self._in_force[record.id]
        return self.disk.remove(record.sha256)

    def self_check(self) -> list[ModelStatus]:
        """Check that each served model is active, present and hashes right; download nothing.

        The node advertises only the models whose status is ``ok``.
        """
        statuses = []
        for model_id, name in self._served.items():
            try:
                record = self._registry.model(model_id)
                if not record.active:
                    raise JobRejected("deactivated in the registry", code="model_inactive")
                if record.base_id is not None and record.base_id not in self._served:
                    raise JobRejected("its base model is not served", code="model_not_served")
                path = self.disk.get(record.sha256)
                if path is None:
                    raise ModelIntegrityError("not downloaded", code="model_missing")
                self._verified.pop(record.sha256, None)
                self._check(record, path)
            except FabstirError as exc:
                statuses.append(ModelStatus(name, model_id, None, ok=False, problem=exc.message))
                continue
            statuses.append(ModelStatus(name, model_id, record.sha256, ok=True))
        return statuses

    def wait_for_updates(self, timeout_s: float | None = None) -> None:
        """Block until background downloads of new versions have finished."""
        for thread in list(self._updates.values()):
            thread.join(timeout_s)

    def _start_update(self, record: ModelRecord) -> None:
        if record.id in self._updates:
            return
        thread = threading.Thread(
            target=self._update, args=(record,), name=f"model-update-{record.name}", daemon=True
        )
        self._updates[record.id] = thread
        log.info(
            "new model version: downloading", extra={"model": record.name, "sha256": record.sha256}
        )
        thread.start()

    def _update(self, record: ModelRecord) -> None:
        try:
            self.fetch(record)
        except FabstirError as exc:
            log.warning(
                "model update failed; still serving the previous version",
                extra={"model": record.name, "sha256": record.sha256, "error": str(exc)},
            )
            with self._lock:
                del self._updates[record.id]
            return
        with self._lock:
            self._in_force[record.id] = record
            del self._updates[record.id]
        log.info("model updated", extra={"model": record.name, "sha256": record.sha256})

    def _download(self, record: ModelRecord, progress: ProgressCallback | None) -> Path:
        target = self.disk.path_for(record.sha256)
        options = self._source_options.get(fsspec.utils.get_protocol(record.uri), {})
        try:
            fs, path = fsspec.core.url_to_fs(record.uri, **options)
            size = fs.size(path)
        except FileNotFoundError:
            size = None  # download_verified reports the missing source
        except OSError as exc:
            raise TransientError(
                "model source unreachable", code="model_download_failed", uri=record.uri
            ) from exc
        if size is not None:
            self.disk.make_room(size)
        download_verified(
            record.uri, target, record.sha256, progress=progress, storage_options=options
        )
        self.disk.add(record.sha256, record.name)
        stat = target.stat()
        self._verified[record.sha256] = (stat.st_size, stat.st_mtime_ns)
        return target

    def _check(self, record: ModelRecord, path: Path) -> None:
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise ModelIntegrityError(
                "model file is missing", code="model_missing", model=record.name, path=str(path)
            ) from exc
        fingerprint = (stat.st_size, stat.st_mtime_ns)
        if self._verified.get(record.sha256) == fingerprint:
            return
        actual = file_sha256(path)
        if actual != record.sha256:
            raise ModelIntegrityError(
                "model file does not match its hash",
                model=record.name,
                path=str(path),
                expected=record.sha256,
                actual=actual,
            )
        self._verified[record.sha256] = fingerprint
