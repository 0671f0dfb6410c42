"""One object store over fsspec: ``file://`` by default, ``s3://`` via s3fs, ``memory://``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from fabstir.errors import ObjectMissing, TransientError

log = logging.getLogger(__name__)


class ObjectStore:
    """Read and write whole objects under one base URL; writes are atomic."""

    def __init__(self, base_url: str, **storage_options: Any) -> None:
        self.base_url = base_url.rstrip("/")
        self._fs, self._base_path = fsspec.url_to_fs(self.base_url, **storage_options)
        if isinstance(self._fs, LocalFileSystem):
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
        """Write ``data`` at ``key`` so no reader ever sees a partial object; return its URI."""
        path = self._path(key)
        with _storage_errors(key):
            if isinstance(self._fs, LocalFileSystem):
                parent = path.rsplit("/", 1)[0]
                self._fs.makedirs(parent, exist_ok=True)
                temporary = f"{path}.tmp-{uuid.uuid4().hex}"
                self._fs.pipe_file(temporary, data)
                self._fs.mv(temporary, path)
            else:
                # One PUT is atomic on object stores: readers see the old object or the new one.
                self._fs.pipe_file(path, data)
        return self.uri_for(key)

    def get(self, key: str) -> bytes:
        """Read the object at ``key``.

        Raises:
            ObjectMissing: nothing is stored at ``key``.
            TransientError: the backend could not be reached.
        """
        with _storage_errors(key):
            try:
                return self._fs.cat_file(self._path(key))
            except FileNotFoundError as exc:
                raise ObjectMissing("no object at key", key=key, store=self.base_url) from exc

    def exists(self, key: str) -> bool:
        with _storage_errors(key):
            return bool(self._fs.exists(self._path(key)))

    def _path(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid storage key {key!r}")
        return f"{self._base_path}/{key}"


@contextmanager
def _storage_errors(key: str) -> Iterator[None]:
    """Translate backend outages (not missing objects or bad keys) into TransientError."""
    try:
        yield
    except (FileNotFoundError, ObjectMissing, ValueError):
        raise
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise TransientError("storage unavailable", key=key) from exc
