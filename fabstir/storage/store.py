"""One object store over fsspec: file:// by default, s3:// via s3fs, memory:// in tests."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from fabstir.errors import ObjectMissing, TransientError
from fabstir.settings import StorageSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Local writes go to a hidden sibling first and are renamed into place; listings skip them.
_TEMPORARY_MARKER = ".tmp-"
_RETRY_DELAY_S = 0.2


def storage_options(settings: StorageSettings, url: str) -> dict[str, Any]:
    """Return the fsspec options that ``url`` needs: S3 endpoint and credentials for s3://."""
    if not url.startswith("s3://"):
        return {}
    options: dict[str, Any] = {
        "use_listings_cache": False,
        # A whole-object read is then one GET: above 1, s3fs first HEADs every object to learn
        # whether to split the read into ranges, which doubles the requests of a result read.
        "max_concurrency": 1,
        "session": _s3_session(),
    }
    if settings.s3_endpoint_url:
        options["endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        options["key"] = settings.s3_access_key_id.get_secret_value()
        options["secret"] = settings.s3_secret_access_key.get_secret_value()
    return options


@functools.cache
def _s3_session() -> Any:
    """Return this process's botocore session for s3://, which sends each PUT body at once.

    One session for all stores, so that fsspec's instance cache (keyed on the options' text) still
    reuses one S3FileSystem, and its connection pool, per endpoint and credentials.
    """
    from aiobotocore.session import AioSession

    session = AioSession()
    session.register("before-send.s3.PutObject", _send_body_without_waiting)
    return session


def _send_body_without_waiting(request: Any, **_: Any) -> None:
    # botocore asks for "100 Continue" before every PUT body: a round trip that lets a server
    # refuse a large upload early, but our single PUTs are results and index entries (multipart
    # parts keep it). Through aiohttp it cost 1 KB puts on loopback a 10 ms stall in one of
    # five (p95 15 ms instead of 4).
    request.headers.pop("Expect", None)


def open_store(settings: StorageSettings, url: str | None = None) -> ObjectStore:
    """Open the store at ``url`` (default: ``settings.url``) with the settings' S3 options."""
    url = url or settings.url
    if not url:
        raise ValueError("no storage URL configured")
    return ObjectStore(url, attempts=settings.attempts, **storage_options(settings, url))


class ObjectStore:
    """Read and write whole objects under one base URL; writes are atomic, outages retried."""

    def __init__(self, base_url: str, *, attempts: int = 3, **storage_options: Any) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self._fs, self._base_path = fsspec.url_to_fs(self.base_url, **storage_options)
        self._base_path = self._base_path.rstrip("/")
        self._local = isinstance(self._fs, LocalFileSystem)
        if self._local:
            self._fs.makedirs(self._base_path, exist_ok=True)

    def uri_for(self, key: str) -> str:
        return f"{self.base_url}/{key}"

    def key_of(self, uri: str) -> str:
        """Return the key of a URI under this store's base URL.

        Raises:
            ObjectMissing: the URI lies outside this store.
        """
        prefix = self.base_url + "/"
        if not uri.startswith(prefix) or ".." in uri[len(prefix) :].split("/"):
            raise ObjectMissing("URI is not inside this store", uri=uri, store=self.base_url)
        return uri[len(prefix) :]

    def put(self, key: str, data: bytes) -> str:
        """Write ``data`` at ``key`` so no reader ever sees a partial object; return its URI.

        Raises:
            TransientError: the backend stayed unreachable for every attempt.
        """
        path = self._path(key)
        self._retrying(key, lambda: self._write(path, data))
        return self.uri_for(key)

    def put_chunks(self, key: str, chunks: Iterable[bytes]) -> str:
        """Write the object at ``key`` from ``chunks``, never holding all of it; return its URI.

        The object appears whole once ``chunks`` is exhausted, or not at all if iterating it
        raises (an S3 multipart upload is then aborted). Not retried: ``chunks`` cannot be
        replayed, so the caller starts over.

        Raises:
            TransientError: the backend failed mid-way.
        """
        path = self._path(key)
        with _storage_errors(key):
            if self._local:
                self._write_local(path, chunks)
            else:
                self._write_remote(path, iter(chunks))
        return self.uri_for(key)

    def get_chunks(self, key: str, chunk_bytes: int) -> Iterator[bytes]:
        """Yield the object at ``key`` in chunks of ``chunk_bytes`` (the last may be shorter).

        Not retried, like :meth:`put_chunks`.

        Raises:
            ObjectMissing: nothing is stored at ``key``.
            TransientError: the backend failed mid-way.
        """
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be at least 1, got {chunk_bytes}")
        path = self._path(key)
        try:
            with _storage_errors(key), self._fs.open(path, "rb", block_size=chunk_bytes) as source:
                while chunk := source.read(chunk_bytes):
                    yield chunk
        except FileNotFoundError as exc:
            raise ObjectMissing("no object at key", key=key, store=self.base_url) from exc

    def get(self, key: str) -> bytes:
        """Read the object at ``key``.

        Raises:
            ObjectMissing: nothing is stored at ``key``.
            TransientError: the backend stayed unreachable for every attempt.
        """
        path = self._path(key)
        try:
            return self._retrying(key, lambda: self._fs.cat_file(path))
        except FileNotFoundError as exc:
            raise ObjectMissing("no object at key", key=key, store=self.base_url) from exc

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return bool(self._retrying(key, lambda: self._fs.exists(path)))

    def delete(self, key: str) -> None:
        """Delete the object at ``key``; deleting a missing object is a no-op (as on S3)."""
        path = self._path(key)
        with suppress(FileNotFoundError):
            self._retrying(key, lambda: self._fs.rm_file(path))

    def list(self, prefix: str = "") -> list[str]:
        """Return the keys under ``prefix`` (a folder-like key prefix, "" for all), sorted."""
        root = self._path(prefix.strip("/")) if prefix.strip("/") else self._base_path
        try:
            paths = self._retrying(prefix, lambda: self._fs.find(root))
        except FileNotFoundError:
            return []
        base = self._base_path + "/"
        keys = (path[len(base) :] for path in paths if path.startswith(base))
        return sorted(key for key in keys if _TEMPORARY_MARKER not in key.rsplit("/", 1)[-1])

    def remove_abandoned_writes(self, older_than_s: float) -> int:
        """Remove what writers killed mid-object left behind, begun over ``older_than_s`` ago:
        local temporary files and S3 multipart uploads never completed. Return how many.

        Readers never see these, but they hold disk or (on S3, billed) storage until removed. A
        younger one may belong to a write still in progress, so it is left alone.
        """
        if not older_than_s >= 0:  # also refuses NaN
            raise ValueError(f"older_than_s must be at least 0, got {older_than_s}")
        cutoff = time.time() - older_than_s
        if self._local:
            stale = [
                path
                for path in self._retrying("", lambda: self._fs.find(self._base_path))
                if _TEMPORARY_MARKER in path.rsplit("/", 1)[-1]
                and self._fs.info(path)["mtime"] < cutoff
            ]
            for path in stale:
                with suppress(FileNotFoundError):  # its writer finished or removed it meanwhile
                    self._fs.rm_file(path)
            return len(stale)
        if "s3" not in self._fs.protocol:
            return 0  # memory:// writes end with their process
        bucket, _, prefix = self._base_path.partition("/")
        uploads = self._retrying("", lambda: self._fs.list_multipart_uploads(bucket))
        stale_uploads = [
            upload
            for upload in uploads
            if upload["Key"].startswith(f"{prefix}/" if prefix else "")
            and upload["Initiated"].timestamp() < cutoff
        ]
        for upload in stale_uploads:
            self._retrying(
                upload["Key"],
                lambda upload=upload: self._fs.abort_mpu(bucket, upload["Key"], upload["UploadId"]),
            )
        return len(stale_uploads)

    def _write(self, path: str, data: bytes) -> None:
        if self._local:
            self._write_local(path, (data,))
        else:
            # One PUT is atomic on object stores: readers see the old object or the new one.
            self._fs.pipe_file(path, data)

    def _write_local(self, path: str, chunks: Iterable[bytes]) -> None:
        parent = path.rsplit("/", 1)[0]
        self._fs.makedirs(parent, exist_ok=True)
        temporary = f"{path}{_TEMPORARY_MARKER}{uuid.uuid4().hex}"
        try:
            with self._fs.open(temporary, "wb") as sink:
                for chunk in chunks:
                    sink.write(chunk)
            self._fs.mv(temporary, path)
        except BaseException:
            if self._fs.exists(temporary):
                self._fs.rm_file(temporary)
            raise

    def _write_remote(self, path: str, chunks: Iterator[bytes]) -> None:
        first, second = next(chunks, b""), next(chunks, None)
        if second is None:
            self._fs.pipe_file(path, first)  # one chunk: one PUT, as put() sends
            return
        # Without autocommit the multipart upload completes only in commit(): a reader sees
        # nothing of it before, and nothing at all if it is discarded.
        sink = self._fs.open(path, "wb", autocommit=False)
        try:
            sink.write(first)
            sink.write(second)
            for chunk in chunks:
                sink.write(chunk)
            sink.close()
        except BaseException:
            sink.discard()
            raise
        sink.commit()

    def _retrying(self, key: str, call: Callable[[], T]) -> T:
        """Run ``call``, retrying backend outages; missing objects and bad keys are not retried."""
        for attempt in range(1, self.attempts + 1):
            try:
                with _storage_errors(key):
                    return call()
            except TransientError:
                if attempt == self.attempts:
                    raise
                log.warning("storage call failed, retrying", extra={"attempt": attempt})
                time.sleep(_RETRY_DELAY_S * attempt)
        raise AssertionError("unreachable")

    def _path(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid storage key {key!r}")
        return f"{self._base_path}/{key}"


@contextmanager
def _storage_errors(key: str) -> Iterator[None]:
    """Translate backend outages (not missing objects or bad keys) into TransientError."""
    try:
        yield
    # A refused credential is a configuration problem: retrying it only delays the message.
    except (FileNotFoundError, PermissionError, ObjectMissing, ValueError):
        raise
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise TransientError("storage unavailable", key=key) from exc
