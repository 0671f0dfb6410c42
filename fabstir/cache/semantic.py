"""Answer cache in a LanceDB table: exact prompt hashes first, then nearest embeddings.

Entries are scoped by model id and a params key (the sampling parameters that change the answer),
so a lookup only ever returns an answer made by the same model with the same parameters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from fabstir.cache.embedder import Embedder
from fabstir.cache.prompts import near_miss_reason, normalise_prompt
from fabstir.errors import ConfigError

log = logging.getLogger(__name__)

TABLE_NAME = "semantic_cache"
# Neighbours checked per semantic lookup: when the nearest fails the near-miss guard, the next
# one may still be a true paraphrase.
_CANDIDATES = 4
# Each store adds a fragment; scans slow down as fragments pile up (300 of them: 40 ms a lookup
# instead of 9), so the writer compacts the table every this many stores.
_COMPACT_EVERY = 64


@dataclass(frozen=True)
class CacheHit:
    """A cached answer and how it was found."""

    answer_text: str
    completion_tokens: int
    similarity: float
    kind: Literal["exact", "semantic"]
    cached_prompt: str


def exact_key(model_id: str, prompt: str, params_key: str) -> str:
    """Return the SHA-256 hex key of (model, params, normalised prompt)."""
    payload = json.dumps([model_id, params_key, normalise_prompt(prompt)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def sql_string(value: str) -> str:
    """Quote a value as a SQL string literal for a LanceDB filter (quotes doubled, NUL refused)."""
    if "\x00" in value:
        raise ValueError("NUL character in a cache filter value")
    return "'" + value.replace("'", "''") + "'"


class SemanticCache:
    """Look up and store answers in one LanceDB table, opened once per process."""

    def __init__(self, uri: str, embedder: Embedder, similarity_threshold: float) -> None:
        """Open (or create) the cache table in the LanceDB directory ``uri``.

        Raises:
            ConfigError: the threshold is outside (0, 1], or the table holds vectors of another
                size.
        """
        if not 0 < similarity_threshold <= 1:
            raise ConfigError(
                "similarity_threshold must be in (0, 1]", threshold=similarity_threshold
            )
        import lancedb
        import pyarrow as pa

        self.embedder = embedder
        self.similarity_threshold = similarity_threshold
        self._stores_since_compaction = 0
        dimension = embedder.dimension
        schema = pa.schema(
            [
                pa.field("key", pa.string()),
                pa.field("model_id", pa.string()),
                pa.field("params_key", pa.string()),
                pa.field("prompt", pa.string()),
                pa.field("answer_text", pa.string()),
                pa.field("completion_tokens", pa.int64()),
                pa.field("renter", pa.string()),
                pa.field("created_at", pa.float64()),
                pa.field("vector", pa.list_(pa.float32(), dimension)),
            ]
        )
        self._db = lancedb.connect(uri)
        try:
            self._table: Any = self._db.open_table(TABLE_NAME)
        except ValueError:  # not created yet; exist_ok covers another process creating it now
            self._table = self._db.create_table(TABLE_NAME, schema=schema, exist_ok=True)
        stored = self._table.schema.field("vector").type.list_size
        if stored != dimension:
            raise ConfigError(
                "cache table vectors do not match the embedding model",
                uri=uri,
                table_dimension=stored,
                model_dimension=dimension,
            )

    def lookup(self, model_id: str, prompt: str, params_key: str) -> CacheHit | None:
        """Return the cached answer for this prompt, model and params, or None."""
        hit = self._lookup_exact(exact_key(model_id, prompt, params_key))
        if hit is None:
            hit = self._lookup_semantic(model_id, prompt, params_key)
        log.debug(
            "cache lookup",
            extra={"model_id": model_id, "hit": hit.kind if hit else None},
        )
        return hit

    def store(
        self,
        model_id: str,
        prompt: str,
        params_key: str,
        answer_text: str,
        completion_tokens: int,
        renter: str,
    ) -> None:
        """Store an answer; storing the same (model, params, normalised prompt) again is a no-op."""
        vector = self.embedder.embed([prompt])[0]
        row = {
            "key": exact_key(model_id, prompt, params_key),
            "model_id": model_id,
            "params_key": params_key,
            "prompt": prompt,
            "answer_text": answer_text,
            "completion_tokens": int(completion_tokens),
            "renter": renter,
            "created_at": time.time(),
            "vector": vector,
        }
        self._table.merge_insert("key").when_not_matched_insert_all().execute([row])
        self._stores_since_compaction += 1
        if self._stores_since_compaction >= _COMPACT_EVERY:
            self.compact()

    def compact(self) -> None:
        """Merge the small fragments that single-row stores leave, and drop old versions."""
        self._table.optimize()
        self._stores_since_compaction = 0

    def _lookup_exact(self, key: str) -> CacheHit | None:
        rows = (
            self._table.search()
            .where(f"key = {sql_string(key)}")
            .select(["prompt", "answer_text", "completion_tokens"])
            .limit(1)
            .to_list()
        )
        if not rows:
            return None
        return _hit(rows[0], similarity=1.0, kind="exact")

    def _lookup_semantic(self, model_id: str, prompt: str, params_key: str) -> CacheHit | None:
        vector = self.embedder.embed([prompt])[0]
        scope = f"model_id = {sql_string(model_id)} AND params_key = {sql_string(params_key)}"
        rows = (
            self._table.search(vector)
            .distance_type("cosine")
            .where(scope, prefilter=True)
            .select(["prompt", "answer_text", "completion_tokens", "_distance"])
            .limit(_CANDIDATES)
            .to_list()
        )
        for row in rows:
            similarity = 1.0 - float(row["_distance"])
            if similarity < self.similarity_threshold:
                break
            reason = near_miss_reason(prompt, row["prompt"])
            if reason is None:
                return _hit(row, similarity=similarity, kind="semantic")
            log.debug("semantic candidate refused", extra={"reason": reason})
        return None


def _hit(row: dict[str, Any], *, similarity: float, kind: Literal["exact", "semantic"]) -> CacheHit:
    return CacheHit(
        answer_text=row["answer_text"],
        completion_tokens=int(row["completion_tokens"]),
        similarity=similarity,
        kind=kind,
        cached_prompt=row["prompt"],
    )
