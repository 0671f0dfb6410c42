"""The local model cache: verified GGUF files named by their SHA-256, within a disk budget.

The least recently used file goes first when space is needed; a pinned file (a model loaded by
the engine) is never evicted or removed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fabstir.errors import ConfigError, TransientError
from fabstir.models.download import partial_path

log = logging.getLogger(__name__)

_INDEX = "index.json"


@dataclass(frozen=True)
class CachedModel:
    """A verified model file in the cache; ``last_used`` orders eviction (higher = more recent)."""

    sha256: str
    name: str
    path: Path
    size_bytes: int
    last_used: int


class ModelDiskCache:
    """Verified model files in one directory, named ``<sha256>.gguf``, under ``budget_bytes``."""

    def __init__(self, directory: Path, budget_bytes: int) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, got {budget_bytes}")
        self.directory = directory
        self.budget_bytes = budget_bytes
        self._pins: Counter[str] = Counter()
        self._lock = threading.RLock()

    def path_for(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.gguf"

    def entries(self) -> list[CachedModel]:
        """Return the cached files, least recently used first."""
        with self._lock:
            index = self._read_index()
            found = []
            for sha256, meta in index.items():
                path = self.path_for(sha256)
                if path.exists():
                    found.append(
                        CachedModel(
                            sha256=sha256,
                            name=meta["name"],
                            path=path,
                            size_bytes=path.stat().st_size,
                            last_used=meta["last_used"],
                        )
                    )
            return sorted(found, key=lambda entry: entry.last_used)

    def get(self, sha256: str) -> Path | None:
        """Return the cached file of ``sha256`` (marking it used), or None."""
        with self._lock:
            path = self.path_for(sha256)
            index = self._read_index()
            if sha256 not in index or not path.exists():
                return None
            index[sha256]["last_used"] = self._next_tick(index)
            self._write_index(index)
            return path

    def make_room(self, size_bytes: int) -> None:
        """Evict least recently used, unpinned files until ``size_bytes`` more fit the budget.

        Raises:
            ConfigError: the file alone is larger than the whole budget.
            TransientError: only pinned (loaded) models stand in the way; retry once they unload.
        """
        if size_bytes > self.budget_bytes:
            raise ConfigError(
                "model is larger than the model cache's disk budget",
                code="model_over_budget",
                size_bytes=size_bytes,
                budget_bytes=self.budget_bytes,
            )
        with self._lock:
            entries = self.entries()
            used = sum(entry.size_bytes for entry in entries)
            for entry in entries:
                if used + size_bytes <= self.budget_bytes:
                    return
                if self._pins[entry.sha256]:
                    continue
                self._delete(entry.sha256)
                used -= entry.size_bytes
                log.info("model evicted", extra={"model": entry.name, "sha256": entry.sha256})
            if used + size_bytes > self.budget_bytes:
                raise TransientError(
                    "model cache is full of models in use",
                    code="model_cache_full",
                    needed_bytes=size_bytes,
                    used_bytes=used,
                    budget_bytes=self.budget_bytes,
                )

    def add(self, sha256: str, name: str) -> Path:
        """Record the verified file already at ``path_for(sha256)`` as most recently used."""
        with self._lock:
            index = self._read_index()
            index[sha256] = {"name": name, "last_used": self._next_tick(index)}
            self._write_index(index)
            return self.path_for(sha256)

    def remove(self, sha256: str) -> bool:
        """Delete a cached file and its partial download; False when there was none.

        Raises:
            TransientError: the model is loaded (``code="model_in_use"``).
        """
        with self._lock:
            if self._pins[sha256]:
                raise TransientError("model is in use", code="model_in_use", sha256=sha256)
            existed = self.path_for(sha256).exists() or partial_path(self.path_for(sha256)).exists()
            self._delete(sha256)
            return existed

    def pin(self, sha256: str) -> None:
        with self._lock:
            self._pins[sha256] += 1

    def unpin(self, sha256: str) -> None:
        with self._lock:
            self._pins[sha256] -= 1
            if self._pins[sha256] <= 0:
                del self._pins[sha256]

    def _delete(self, sha256: str) -> None:
        index = self._read_index()
        index.pop(sha256, None)
        self._write_index(index)
        self.path_for(sha256).unlink(missing_ok=True)
        partial_path(self.path_for(sha256)).unlink(missing_ok=True)

    @staticmethod
    def _next_tick(index: dict[str, dict]) -> int:
        return max((meta["last_used"] for meta in index.values()), default=0) + 1

    def _read_index(self) -> dict[str, dict]:
        try:
            return json.loads((self.directory / _INDEX).read_text())
        except FileNotFoundError:
            return {}

    def _write_index(self, index: dict[str, dict]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = self.directory / f"{_INDEX}.{os.getpid()}.tmp"
        staging.write_text(json.dumps(index, sort_keys=True))
        os.replace(staging, self.directory / _INDEX)
