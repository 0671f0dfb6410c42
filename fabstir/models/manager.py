"""The models this host serves: resolve ids through the registry, keep verified copies, update.

A job's model id resolves to the registry's record. The first time, the file is downloaded before
the job runs. When the registry later points the id at new bytes, the new version downloads and
verifies in the background while new jobs keep getting the old one; once verified, new jobs switch
to it in one step, and jobs that already hold the old ``LocalModel`` finish on it.

The registry's record of a model is read again once it is ``registry_ttl_s`` old, so an update
is noticed by the first job after that (with 0, by the next job), while the jobs in between and a
job's second look (claim, then fetch) cost no chain read. An idle node notices it with
``check_for_updates()``, which the node's update poller calls. A version that fails to download or
verify is not tried again in the background until a wait has passed, which doubles with each
failure; a job asking for a version that failed to verify gets the same error without a download
until then. So a bad registry entry costs one download per wait, not one per job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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

DEFAULT_RETRY_AFTER_S = 60.0
DEFAULT_MAX_RETRY_AFTER_S = 3600.0


@dataclass(frozen=True)
class ModelStatus:
    """The outcome of checking one served model: ``ok`` or why it cannot be advertised."""

    name: str
    model_id: str
    sha256: str | None
    ok: bool
    problem: str | None = None


@dataclass(frozen=True)
class _FailedVersion:
    """A model version whose last download or verification failed, and when to try it again."""

    sha256: str
    wait_s: float
    retry_at: float
    error: FabstirError


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
        retry_after_s: float = DEFAULT_RETRY_AFTER_S,
        max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
        registry_ttl_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``source_options`` maps a URL protocol (``"s3"``) to the fsspec options it needs.

        A version that failed is tried again after ``retry_after_s``, then after twice that, and
        so on up to ``max_retry_after_s``. A registry record is reused for ``registry_ttl_s``
        after it was read (0: read on every ``resolve``). ``clock`` (seconds) measures both.
        """
        if not 0 < retry_after_s <= max_retry_after_s:
            raise ValueError(
                "need 0 < retry_after_s <= max_retry_after_s, "
                f"got {retry_after_s} and {max_retry_after_s}"
            )
        if not registry_ttl_s >= 0:  # also refuses NaN
            raise ValueError(f"need registry_ttl_s >= 0, got {registry_ttl_s}")
        self._registry_ttl_s = registry_ttl_s
        self._retry_after_s = retry_after_s
        self._max_retry_after_s = max_retry_after_s
        self._clock = clock
        self._registry = registry
        self._source_options = dict(source_options or {})
        self.disk = disk
        self._served = {model_id_of(name): name for name in served}
        self._in_force: dict[str, ModelRecord] = {}
        # model id -> (clock time it expires, the registry's record read before then).
        self._registry_reads: dict[str, tuple[float, ModelRecord]] = {}
        # sha256 -> (size, mtime_ns) of files whose hash matched in this process.
        self._verified: dict[str, tuple[int, int]] = {}
        self._updates: dict[str, threading.Thread] = {}
        self._failed: dict[str, _FailedVersion] = {}
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
        return self._in_force_version(model_id)

    def fetch(self, record: ModelRecord, progress: ProgressCallback | None = None) -> LocalModel:
        """Return a verified local copy of ``record`` (and of its base model, for an adapter).

        After a version failed to verify (or was missing at its URI), the same error is raised
        again without a download until its retry wait has passed (``retry_in_s`` in the error's
        context).

        Raises:
            ModelIntegrityError: the bytes do not match the record's SHA-256.
            ObjectMissing: nothing is stored at the record's URI.
            TransientError: the download was interrupted (it resumes on the next call).
        """
        base = None
        if record.base_id is not None:
            base = self.fetch(self._in_force_version(record.base_id), progress)
        self._raise_if_backing_off(record)
        try:
            path = self.disk.get(record.sha256)
            if path is None:
                path = self._download(record, progress)
            self._check(record, path)
        except FabstirError as exc:
            self._note_failure(record, exc)
            raise
        self._note_success(record)
        return LocalModel(name=record.name, path=str(path), sha256=record.sha256, base=base)

    def pull(self, name_or_id: str, progress: ProgressCallback | None = None) -> LocalModel:
        """Download and verify a served model now (``fabstir-node models pull``)."""
        return self.fetch(self.resolve(to_model_id(name_or_id)), progress)

    def remove(self, name_or_id: str) -> bool:
        """Delete every cached version of a model; False if none was cached.

        Raises:
            JobRejected: the registry does not know the model (``code="unknown_model"``).
            TransientError: the model is loaded (``code="model_in_use"``).
        """
        record = self._registry.model(to_model_id(name_or_id))
        versions = {record.sha256} | {
            entry.sha256 for entry in self.disk.entries() if entry.name == record.name
        }
        with self._lock:
            for sha256 in versions:
                self._verified.pop(sha256, None)
            self._in_force.pop(record.id, None)
        removed = [self.disk.remove(sha256) for sha256 in sorted(versions)]
        return any(removed)

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

    def in_force(self, name_or_id: str) -> ModelRecord | None:
        """Return the version new jobs of a model get now, without reading the registry; None
        until this process has fetched the model."""
        with self._lock:
            return self._in_force.get(to_model_id(name_or_id))

    def check_for_updates(self) -> None:
        """Read the registry for every served model now and start downloading each new version
        in the background, as a job's lookup would, so that it is verified before the next job.

        Models this process has not fetched yet are left to their first job. A model the registry
        does not know or has deactivated, or a registry that cannot be reached, is logged and
        skipped: the next check tries again.
        """
        for model_id, name in self._served.items():
            try:
                self._in_force_version(model_id, fresh=True)
            except FabstirError as exc:
                level = logging.INFO if isinstance(exc, JobRejected) else logging.WARNING
                log.log(
                    level,
                    "model update check failed",
                    extra={"model": name, "code": exc.code, "error": str(exc)},
                )

    def wait_for_updates(self, timeout_s: float | None = None) -> None:
        """Block until background downloads of new versions have finished."""
        for thread in list(self._updates.values()):
            thread.join(timeout_s)

    def _in_force_version(self, model_id: str, *, fresh: bool = False) -> ModelRecord:
        """Return the version new jobs get; start fetching a newer registry version if needed."""
        latest = self._registry_record(model_id, fresh=fresh)
        if not latest.active:
            raise JobRejected("model is deactivated", code="model_inactive", model_id=model_id)
        with self._lock:
            current = self._in_force.get(model_id)
            if current is None or current.sha256 == latest.sha256:
                return latest
            if self.disk.get(latest.sha256) is not None:
                self._in_force[model_id] = latest
                return latest
            if self._retry_in_s(latest) is None:
                self._start_update(latest)
            return current

    def _registry_record(self, model_id: str, *, fresh: bool = False) -> ModelRecord:
        """Return the registry's record of ``model_id``, read at most once per ``registry_ttl_s``
        unless ``fresh``.

        Only records are kept: an unknown model is asked about again on the next call.
        """
        now = self._clock()
        with self._lock:
            kept = self._registry_reads.get(model_id)
        if kept is not None and now < kept[0] and not fresh:
            return kept[1]
        record = self._registry.model(model_id)
        if self._registry_ttl_s > 0:
            with self._lock:
                self._registry_reads[model_id] = (now + self._registry_ttl_s, record)
        return record

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
                extra={
                    "model": record.name,
                    "sha256": record.sha256,
                    "error": str(exc),
                    "retry_in_s": self._retry_in_s(record),
                },
            )
            with self._lock:
                del self._updates[record.id]
            return
        with self._lock:
            self._in_force[record.id] = record
            del self._updates[record.id]
        log.info("model updated", extra={"model": record.name, "sha256": record.sha256})

    def _retry_in_s(self, record: ModelRecord) -> float | None:
        """Seconds until a version that failed may be tried again; None if it may be now."""
        failed = self._failure_of(record)
        if failed is None:
            return None
        wait_s = failed.retry_at - self._clock()
        return wait_s if wait_s > 0 else None

    def _failure_of(self, record: ModelRecord) -> _FailedVersion | None:
        with self._lock:
            failed = self._failed.get(record.id)
        return failed if failed is not None and failed.sha256 == record.sha256 else None

    def _raise_if_backing_off(self, record: ModelRecord) -> None:
        failed = self._failure_of(record)
        # An interrupted download resumes where it stopped, so a job's own retries may go on;
        # only background updates wait after one.
        if (
            failed is None
            or failed.retry_at <= self._clock()
            or isinstance(failed.error, TransientError)
        ):
            return
        error = failed.error
        raise type(error)(
            f"{error.message}; not tried again yet",
            code=error.code,
            **{**error.context, "retry_in_s": round(failed.retry_at - self._clock(), 1)},
        )

    def _note_failure(self, record: ModelRecord, error: FabstirError) -> None:
        with self._lock:
            previous = self._failure_of(record)
            wait_s = self._retry_after_s
            if previous is not None:
                wait_s = min(previous.wait_s * 2, self._max_retry_after_s)
            self._failed[record.id] = _FailedVersion(
                record.sha256, wait_s, self._clock() + wait_s, error
            )

    def _note_success(self, record: ModelRecord) -> None:
        with self._lock:
            if self._failure_of(record) is not None:
                del self._failed[record.id]
            # A newer version takes over in _in_force_version() or _update(), never half-way.
            self._in_force.setdefault(record.id, record)

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
