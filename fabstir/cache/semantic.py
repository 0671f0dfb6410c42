"""Answer cache in a LanceDB table: exact prompt hashes first, then nearest embeddings.

Entries are scoped by model id and a params key (the sampling parameters that change the answer),
so a lookup only ever returns an answer made by the same model with the same parameters. Entries
expire after a TTL, the least recently used are evicted beyond a size bound, and every entry records
the renter whose job produced it, so erasure can remove them all.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

import numpy as np

from fabstir.cache.embedder import Embedder
from fabstir.cache.lexicon import wordnet
from fabstir.cache.prompts import near_miss_reason, normalise_prompt
from fabstir.errors import ConfigError, TransientError

log = logging.getLogger(__name__)
_Result = TypeVar("_Result")

TABLE_NAME = "semantic_cache"
# Neighbours checked per semantic lookup: when the nearest fails the near-miss guard, the next
# one may still be a true paraphrase.
_CANDIDATES = 4
# Nearest entries read from every scope; the lookup's scope is picked out of them here. Searching
# with the scope as a prefilter checks each compared code against the scope's row mask: 9.7 ms
# instead of 1.3 for the same 165K comparisons at 1M entries. Only when all of these are close
# enough to hit and too few are in scope does the lookup search again, scoped.
_NEAREST = 8
# LanceDB's vector search is fast only on a table whose rows are all indexed and none deleted:
# at 1M entries 5 unindexed rows put the search's p50 at 14.9 ms against 9.9 (even when told to
# skip them), and a single deleted row the lookup's at 21.5 ms against 16.1. So a store indexes
# its row at once (~50 ms at 1M entries), and only maintenance deletes rows (expiry, eviction)
# and then rewrites the fragments holding them (0.85 s for a 100K-row fragment at 1M entries,
# every index remapped). Erasure deletes at once: the law does not wait for maintenance.
#
# Each store also adds a fragment, and lookups slow as they pile up (at 1M entries the p99 was
# 34.1 ms with 257 of them against 23.0 with 65): the store that finds this many small fragments
# merges them. The table's own count, not one per process, which would never be reached where
# each job runs in its own process and stores once. Small means under _SMALL_FRAGMENT_ROWS rows:
# larger fragments left by compactions (or by rewriting fragments with deleted rows) may stand
# where nothing can merge them, and counting them would compact at every store.
_SMALL_FRAGMENTS = 16
_SMALL_FRAGMENT_ROWS = 4096
# Compaction merges only fragments under this many rows. LanceDB's own optimize() merges every
# fragment under 1M rows, so at 1M entries it rewrote the whole table (7 s) to add 13 rows.
_FRAGMENT_ROWS = 65_536
# Maintenance rewrites each fragment holding deleted rows into fragments of up to this many rows
# (LanceDB's default), merging neighbours that hold some too: rewritten to _FRAGMENT_ROWS, the
# 1M-row fragment of a table at its size bound came back as 16 after the first eviction, and at
# 1M entries 10 fragments cost ~1.5-2 ms of the lookup p50 against one.
_REWRITTEN_FRAGMENT_ROWS = 1 << 20
# A store indexes its row into a second segment of each index, beside the one maintenance
# builds, not into that one: merging rewrote the whole index (at 1M entries ~0.2 s for the
# vector index, 0.19 s for the key's B-tree; a store took 0.25-0.4 s, against ~50 ms with second
# segments), and a rewritten index is a new one to every reader, loaded again in the lookups
# that follow. Lookups interleaved with stores at 1M entries took p50 27-45 ms, p99 48-60,
# against 19-19.5 and 25-32 with the second segments (benchmarks.cache_growth). The second
# segment costs a search up to ~2 ms (both are read); more segments cost more (at 1M entries 8
# put the p50 at 21.1 ms against 15.6 for one), so stores and their compactions merge into it,
# and maintenance merges up to _MERGE_SEGMENTS, i.e. all, into one. LanceDB's Python API cannot
# choose, so indexing and compaction go through lance itself (pylance, the library LanceDB is
# built on).
_MERGE_SEGMENTS = 64
_VECTOR_INDEX = "vector_idx"
_KEY_INDEX = "key_idx"
# Indexing a second segment warns once per IVF partition it finds no row for (all but one, for
# a single row): 122 lines per store at 1M entries. Set before lance is first imported, as its
# logger reads it then; an operator's own LANCE_LOG wins.
os.environ.setdefault("LANCE_LOG", "warn,lance::index::vector::builder=error")
# Maintenance reads only the vector index's partition count from its statistics; lance warns on
# each read unless told whether to include the centroids too.
os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
# Rows per IVF partition when the vector index is trained (lance's default, set here so that
# maintenance can tell when the partitions have outgrown it). Rows added later join the
# partitions trained before them, and a search reads _NPROBES partitions, so it slows as they
# grow: maintenance retrains the index once they average this many times the target. Retraining
# at each doubling costs about twice the last training in all (45 s at 1M entries here).
_ROWS_PER_PARTITION = 8192
_RETRAIN_GROWTH = 2
# Set in the table's config while maintenance retrains the vector index. Stores then leave
# their rows unindexed and the fragments as they are: either commit changes what the retraining
# replaces, and during a 45 s retraining (1M entries) some store's commit would land first every
# time. A marker older than _RETRAIN_MARKER_S is a crashed pass's, and ignored.
_RETRAINING = "fabstir.cache.retraining_since"
_RETRAIN_MARKER_S = 600
# How lance words a lost commit race in the messages of the errors LanceDB raises.
_CONFLICT_PHRASES = (
    "commit conflict",
    "incompatible transaction",
    "too many concurrent writers",
)
# Versions a maintenance pass keeps: a reader holding an older one (another process's handle
# re-reads within _READ_CONSISTENCY) must still find its files. LanceDB's optimize() kept 7 days.
_KEEP_VERSIONS = timedelta(days=7)
# How stale a long-lived handle's view may get: without a bound, a process (the API server)
# would never see the entries other processes store, nor their erasures and evictions.
_READ_CONSISTENCY = timedelta(seconds=1)
# IVF_PQ search: partitions probed, and candidates re-scored with exact distances so that the
# threshold is applied to true cosine similarities, not PQ approximations.
_NPROBES = 20
_RESCORED = 40
# Hits are noted in memory and appended to a table of their own in batches: a process writes
# its pending uses once it has this many, once the oldest has waited _WRITE_USES_AFTER_S, and
# when it exits (a job's process looks up once). Eviction reads the latest use of every entry
# from that table. Recording a use on its entry's row would rewrite the row (LanceDB updates
# delete and re-add), and each deleted row slows every lookup until maintenance rewrites its
# fragment: a batch of uses in the API server put the p50 at ~21 ms against ~16 at 1M entries.
# A crash loses at most the pending uses' recency, never an entry.
USES_TABLE_NAME = "semantic_cache_uses"
_WRITE_USES_EVERY = 256
_WRITE_USES_AFTER_S = 60.0
# Keys per delete filter when eviction or erasure removes entries or uses by key.
_KEYS_PER_DELETE = 4096
# Lance file format of a new table. The default (2.2) reads the few rows a search returns more
# slowly: a search taking 7 columns of 8 rows at 1M entries took 14.1 ms mean against 10.0 with
# 2.1, interleaved on one machine. A table keeps the format it was created with.
_FILE_FORMAT = "2.1"
# An entry's last use as its own row records it: its store, or the last use written on the row
# before uses had a table of their own (a row added by hand may have none: its store counts).
_STORED_USE = ("last_used_at", "created_at")


def answer_reusable(temperature: float, allow_reuse: bool) -> bool:
    """Say whether a cached answer may serve (or be stored for) a job sampled at ``temperature``.

    A job sampled with temperature > 0 asks for a fresh draw, so it bypasses the cache unless
    the renter allowed reuse.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    return temperature == 0 or allow_reuse


@dataclass(frozen=True)
class CacheMaintenance:
    """What a compaction or maintenance pass did, and the table it left."""

    expired: int
    evicted: int
    entries: int
    fragments: int
    index_retrained: bool


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

    def __init__(
        self,
        uri: str,
        embedder: Embedder,
        similarity_threshold: float,
        *,
        ttl_s: float = 7 * 24 * 3600,
        max_entries: int = 1_000_000,
        index_min_rows: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create) the cache table in the LanceDB directory ``uri``.

        Raises:
            ConfigError: the threshold is outside (0, 1], a bound is not positive, or the table
                holds vectors of another size.
            DependencyMissing: the WordNet data of the near-miss guard is not installed.
        """
        if not 0 < similarity_threshold <= 1:
            raise ConfigError(
                "similarity_threshold must be in (0, 1]", threshold=similarity_threshold
            )
        if ttl_s <= 0 or max_entries < 1 or index_min_rows < 256:
            raise ConfigError(
                "cache bounds out of range (ttl_s > 0, max_entries >= 1, index_min_rows >= 256)",
                ttl_s=ttl_s,
                max_entries=max_entries,
                index_min_rows=index_min_rows,
            )
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.index_min_rows = index_min_rows
        self._clock = clock
        import lancedb
        import pyarrow as pa

        self.embedder = embedder
        self.similarity_threshold = similarity_threshold
        wordnet()  # the near-miss guard's lexicon loads in ~2 s: now, not in the first lookup
        self._pending_uses: dict[str, float] = {}
        self._pending_since = 0.0
        self._write_uses_after = float("-inf")
        self._vector_indexed = False
        self._vector_index_checked = float("-inf")
        self._read_at = float("-inf")
        self._writes = self._read_writes = 0
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
                pa.field("last_used_at", pa.float64()),
                pa.field("vector", pa.list_(pa.float32(), dimension)),
            ]
        )
        self._db = lancedb.connect(
            uri,
            read_consistency_interval=_READ_CONSISTENCY,
            storage_options={"new_table_data_storage_version": _FILE_FORMAT},
        )
        self._table: Any = self._open_table(TABLE_NAME, schema)
        uses = pa.schema([pa.field("key", pa.string()), pa.field("used_at", pa.float64())])
        self._uses: Any = self._open_table(USES_TABLE_NAME, uses)
        if "last_used_at" not in self._table.schema.names:
            # A table from before LRU eviction: each entry's last use so far was its store.
            self._table.add_columns({"last_used_at": "created_at"})
        stored = self._table.schema.field("vector").type.list_size
        if stored != dimension:
            raise ConfigError(
                "cache table vectors do not match the embedding model",
                uri=uri,
                table_dimension=stored,
                model_dimension=dimension,
            )
        self._reader_dataset: Any = self._table.to_lance()
        self._prewarm_indexes()
        _OPEN_CACHES.add(self)

    def _open_table(self, name: str, schema: Any) -> Any:
        try:
            return self._db.open_table(name)
        except ValueError:  # not created yet; exist_ok covers another process creating it now
            return self._db.create_table(name, schema=schema, exist_ok=True)

    def lookup(
        self,
        model_id: str,
        prompt: str,
        params_key: str,
        *more_params_keys: str,
        max_completion_tokens: int | None = None,
    ) -> CacheHit | None:
        """Return the cached answer for this prompt and model stored under any of the params
        keys, and of at most ``max_completion_tokens`` tokens if given, or None."""
        params_keys = (params_key, *more_params_keys)
        # The TTL and the length are checked on the rows found, not in the query: a range filter
        # over every row's created_at costs ~23 ms at 1M entries even with an index.
        made_after = self._clock() - self.ttl_s
        fits = _Fits(made_after, max_completion_tokens)
        keys = [exact_key(model_id, prompt, key) for key in params_keys]
        # The prompt is embedded while the exact query runs, on the other core: a miss waits only
        # for the longer of the two. An exact hit leaves its embedding to finish unused.
        embedding = self.embedder.submit([prompt])
        found = self._lookup_exact(keys, fits) or self._lookup_semantic(
            model_id, prompt, embedding.result()[0], params_keys, fits
        )
        hit = None
        if found is not None:
            hit, stored_params_key = found
            # The entry found was stored under its own prompt, in this model and its params scope.
            self._note_use(exact_key(model_id, hit.cached_prompt, stored_params_key))
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
        """Store an answer; storing the same (model, params, normalised prompt) again is a no-op.

        Raises:
            TransientError: the table could not be written (``code="cache_write_failed"``).
        """
        vector = self.embedder.embed([prompt])[0]
        now = self._clock()
        row = {
            "key": exact_key(model_id, prompt, params_key),
            "model_id": model_id,
            "params_key": params_key,
            "prompt": prompt,
            "answer_text": answer_text,
            "completion_tokens": int(completion_tokens),
            "renter": renter.lower(),
            "created_at": now,
            "last_used_at": now,
            "vector": vector,
        }
        # LanceDB raises OSError for the directory's or the object store's I/O failures.
        try:
            merged = self._table.merge_insert("key").when_not_matched_insert_all().execute([row])
        except OSError as exc:
            raise TransientError(
                f"cache write failed: {exc}", code="cache_write_failed", model_id=model_id
            ) from exc
        if not merged.num_inserted_rows:
            return  # stored before: indexing nothing new would still rewrite the second segment
        self._upkeep_after_store()
        self._wrote()
        self._open_new_segments(row["key"], vector)

    def _open_new_segments(self, key: str, vector: Any) -> None:
        """Query the version this store made, as a lookup does, so that this process's next
        lookup finds the indexes' new segments open: opening the vector index's took 8-12 ms at
        1M entries, in the lookup a renter waits for rather than in the store (which runs after
        the GPU slot is released). Interleaved with stores at 1M entries, lookups took p50
        12.8-15.3 ms and p99 17.5-23.9 against 18.8-19.5 and 25.4-32.2; a store ~10 ms more."""
        try:
            if not self._has_vector_index():
                return  # no index: every query reads the rows themselves
            self._lookup_exact([key], _Fits(float("-inf"), None))
            self._nearest(vector, 1)
        except Exception as exc:  # the answer is stored; the next lookup meets any fault itself
            log.warning("opening the cache's new index segments failed", extra={"error": str(exc)})

    def _upkeep_after_store(self) -> None:
        """Merge the small fragments once there are _SMALL_FRAGMENTS of them, else index the
        stored row; log any failure instead of raising it: the answer is stored, and the job
        that stored it must not fail over upkeep (the next store's indexes every row left out)."""
        try:
            self._translate_errors(self._compact_or_index)
        except Exception as exc:
            log.warning(
                "cache upkeep after a store failed",
                extra={"error": str(exc)},
                exc_info=not isinstance(exc, TransientError),  # a fault: keep its traceback
            )

    def _compact_or_index(self) -> None:
        dataset = self._latest_dataset()
        if _retraining(dataset):
            return
        fragments = dataset.get_fragments()
        small = sum(f.metadata.physical_rows < _SMALL_FRAGMENT_ROWS for f in fragments)
        if small >= _SMALL_FRAGMENTS:
            self.compact()
        elif self._has_vector_index():
            _index_new_rows(dataset, merge_all=False)
            self._table.checkout_latest()

    def compact(self) -> CacheMaintenance:
        """Merge the small fragments, index the rows not indexed yet into the second segment of
        each index, and index a table that has reached ``index_min_rows``.

        Raises:
            TransientError: the table could not be read or written (``cache_write_failed``),
                or another process committed a conflicting change to it meanwhile, such as its
                own compaction (``cache_commit_conflict``); nothing is lost either way.
        """
        return self._translate_errors(lambda: self._compact(maintenance=False))

    def maintain(self) -> CacheMaintenance:
        """Delete expired and evicted entries, rewrite the fragments that held them, compact,
        merge each index's segments into one, retrain the vector index once the rows added since
        its training have outgrown its partitions, and delete the files of versions older than
        a week.

        It takes seconds, a retraining tens of seconds, on a large table: this runs off the
        jobs' path (the cache-maintenance flow). Raises as :meth:`compact`.
        """
        return self._translate_errors(lambda: self._compact(maintenance=True))

    def _translate_errors(self, upkeep: Callable[[], _Result]) -> _Result:
        from lance.commit import CommitConflictError

        try:
            return upkeep()
        except (OSError, RuntimeError) as exc:
            # lance raises CommitConflictError (an OSError); LanceDB raises the same conflicts
            # as RuntimeError, which only its message tells from a fault.
            if isinstance(exc, CommitConflictError) or any(
                phrase in str(exc).lower() for phrase in _CONFLICT_PHRASES
            ):
                raise TransientError(
                    "another process changed the cache table meanwhile",
                    code="cache_commit_conflict",
                ) from exc
            if isinstance(exc, OSError):
                raise TransientError(
                    f"cache maintenance failed: {exc}", code="cache_write_failed"
                ) from exc
            raise

    def _compact(self, *, maintenance: bool) -> CacheMaintenance:
        expired = self.expire() if maintenance else 0
        evicted = self.evict() if maintenance else 0
        if maintenance:
            self._fold_uses()
        dataset = self._latest_dataset()
        if maintenance:
            # First: compaction never merges fragments that different segments cover, so the
            # stores' rows would stay a small fragment of their own under the first segment,
            # and a store's compaction merging two such fragments would rewrite that segment.
            _index_new_rows(dataset, merge_all=True)
            fragments = dataset.get_fragments()
            intact = [f.fragment_id for f in fragments if not f.metadata.deletion_file]
            if len(intact) < len(fragments):
                dataset.optimize.compact_files(
                    target_rows_per_fragment=_REWRITTEN_FRAGMENT_ROWS,
                    materialize_deletions=True,
                    materialize_deletions_threshold=0.0,
                    excluded_fragment_ids=intact,
                )
        # A store merges only the small fragments, so it never rewrites a larger one (up to
        # _FRAGMENT_ROWS rows, every _SMALL_FRAGMENTS stores); maintenance merges those.
        large = [
            fragment.fragment_id
            for fragment in dataset.get_fragments()
            if not maintenance and fragment.metadata.physical_rows >= _SMALL_FRAGMENT_ROWS
        ]
        dataset.optimize.compact_files(
            target_rows_per_fragment=_FRAGMENT_ROWS,
            materialize_deletions=False,
            excluded_fragment_ids=large,
        )
        # Rows stored meanwhile; merging all again would rewrite the merged index for nothing.
        _index_new_rows(dataset, merge_all=False)
        self._table.checkout_latest()
        self._wrote()
        retrain = maintenance and self._partitions_outgrown(dataset)
        if retrain:
            self._retrain_vector_index(dataset)
        self.ensure_index()
        if maintenance:
            dataset.cleanup_old_versions(older_than=_KEEP_VERSIONS)
            self._latest_uses_dataset().cleanup_old_versions(older_than=_KEEP_VERSIONS)
        return CacheMaintenance(
            expired=expired,
            evicted=evicted,
            entries=self._table.count_rows(),
            fragments=len(self._latest_dataset().get_fragments()),
            index_retrained=retrain,
        )

    def _latest_dataset(self) -> Any:
        """The table as a lance dataset at its latest version (this handle may lag by up to
        _READ_CONSISTENCY, and a commit based on an older version conflicts)."""
        return _latest(self._table)

    def _latest_uses_dataset(self) -> Any:
        return _latest(self._uses)

    def expire(self) -> int:
        """Delete entries stored longer ago than the TTL; return how many were deleted.

        A hit does not extend an entry's life: an answer goes stale with age, however popular.
        """
        return self._delete(f"created_at < {self._clock() - self.ttl_s!r}")

    def evict(self) -> int:
        """Delete the least recently used entries beyond ``max_entries``; return how many.

        An entry's last use is its latest hit, or its store if it never had one, so an old
        answer that keeps being asked for outlives a newer one that nobody asked for again.

        Raises:
            TransientError: this process's pending uses could not be written
                (``cache_write_failed``); nothing was deleted.
        """
        self.write_uses()
        excess = self._table.count_rows() - self.max_entries
        if excess <= 0:
            return 0
        import pyarrow.compute as pc

        entries = self._table.search().select(["key", *_STORED_USE]).limit(None).to_arrow()
        stored_use = pc.coalesce(*(entries.column(name) for name in _STORED_USE))
        last_used = _arrow_table(key=entries.column("key"), stored_use=stored_use).join(
            _latest_uses(self._latest_uses_dataset()), "key", join_type="left outer"
        )
        last_use = pc.max_element_wise(
            last_used.column("stored_use"), last_used.column("used_at"), skip_nulls=True
        )
        cutoff = float(np.partition(last_use.to_numpy(), excess - 1)[excess - 1])
        # Entries last used in the same instant as the cut-off go too: the bound is never exceeded.
        victims = last_used.column("key").filter(pc.less_equal(last_use, cutoff))
        return self._delete(*_keys_in(victims.to_pylist()))

    def erase_renter(self, renter: str) -> int:
        """Delete every entry made from ``renter``'s jobs, and their recorded uses; return how
        many entries were deleted.

        The uses go first, so that erasing again after a failure still finds their keys. Uses
        of these entries that other processes write later (their pending ones) hold only the
        keys' hashes, and the next maintenance pass drops them with every use of an entry gone.
        """
        where = f"renter = {sql_string(renter.lower())}"
        self._table.checkout_latest()
        keys = self._table.search().where(where).select(["key"]).limit(None).to_arrow()
        erased = keys.column("key").to_pylist()
        for key in erased:
            self._pending_uses.pop(key, None)
        self._uses.checkout_latest()
        for condition in _keys_in(erased):
            self._uses.delete(condition)
        return self._delete(where)

    def _fold_uses(self) -> None:
        """Replace the uses recorded so far by each remaining entry's latest one: the uses table
        would otherwise grow by every hit, and keep the keys of entries long deleted."""
        import pyarrow.compute as pc

        dataset = self._latest_uses_dataset()
        fragments = dataset.get_fragments()
        if not fragments:
            return
        # Fragment ids only grow: rows appended from now on, by any process, lie above this.
        folded_below = (max(fragment.fragment_id for fragment in fragments) + 1) << 32
        latest = _latest_uses(dataset)
        entries = self._table.search().select(["key"]).limit(None).to_arrow().column("key")
        kept = latest.filter(pc.is_in(latest.column("key"), value_set=entries))
        if kept.num_rows:
            self._uses.add(kept)
        self._latest_uses_dataset().delete(f"_rowaddr < {folded_below}")
        self._uses.checkout_latest()

    def ensure_index(self) -> bool:
        """Build the indexes once the table reaches ``index_min_rows``: ANN on the vectors, a
        B-tree on the exact key (exact lookups and deletes by key would scan every row) and bitmaps
        on the scope columns; return if they exist."""
        indexed = {tuple(index.columns) for index in self._table.list_indices()}
        wanted = {("vector",), ("key",), ("model_id",), ("params_key",)}
        if wanted <= indexed:
            return True
        if self._table.count_rows() < self.index_min_rows:
            return False
        from lancedb.index import Bitmap, BTree

        started = time.perf_counter()
        if ("vector",) not in indexed:
            self._create_vector_index(replace=False)
        if ("key",) not in indexed:
            self._table.create_index("key", config=BTree(), name=_KEY_INDEX)
        # A lookup crowded out of its scope searches again with the scope as a pre-filter:
        # without these that search scans every row.
        for column in ("model_id", "params_key"):
            if (column,) not in indexed:
                self._table.create_index(column, config=Bitmap())
        self._vector_indexed = True
        self._wrote()
        log.info(
            "built cache indexes",
            extra={"rows": self._table.count_rows(), "s": round(time.perf_counter() - started, 1)},
        )
        self._prewarm_indexes()
        return True

    def _create_vector_index(self, *, replace: bool) -> None:
        from lancedb.index import IvfPq

        config = IvfPq(distance_type="cosine", target_partition_size=_ROWS_PER_PARTITION)
        self._table.create_index("vector", config=config, replace=replace, name=_VECTOR_INDEX)

    def _partitions_outgrown(self, dataset: Any) -> bool:
        if not any(index.name == _VECTOR_INDEX for index in dataset.describe_indices()):
            return False
        # Segments share their partitions: the first one's count is the index's.
        partitions = dataset.stats.index_stats(_VECTOR_INDEX)["indices"][0]["num_partitions"]
        return dataset.count_rows() > _RETRAIN_GROWTH * _ROWS_PER_PARTITION * partitions

    def _retrain_vector_index(self, dataset: Any) -> None:
        started = time.perf_counter()
        dataset.update_config({_RETRAINING: repr(time.time())})
        try:
            self._create_vector_index(replace=True)
        finally:
            self._latest_dataset().delete_config_keys([_RETRAINING])
        log.info(
            "retrained the cache's vector index",
            extra={"rows": self._table.count_rows(), "s": round(time.perf_counter() - started, 1)},
        )

    def _has_vector_index(self) -> bool:
        """Whether the table has its vector index, checked again at most every
        _READ_CONSISTENCY until it has (an index is never dropped)."""
        now = time.monotonic()
        if not self._vector_indexed and now - self._vector_index_checked >= (
            _READ_CONSISTENCY.total_seconds()
        ):
            self._vector_index_checked = now
            self._vector_indexed = any(
                index.columns == ["vector"] for index in self._table.list_indices()
            )
        return self._vector_indexed

    def _prewarm_indexes(self) -> None:
        """Load the indexes into the lookups' memory now rather than piecemeal in the lookups
        that follow: at 1M entries this takes ~0.1 s, and a cold index put the p99 of the first
        200 lookups at 25.0 ms against 21.9 prewarmed."""
        reader = self._reader()
        for index in reader.describe_indices():
            reader.prewarm_index(index.name)

    def _reader(self) -> Any:
        """The table as lookups read it: through lance itself, whose queries took 0.65 ms for
        the exact level and ~5.4 for the nearest at 1M entries against 2.0 and 6.4 through
        LanceDB's. Its latest version is looked for at most every _READ_CONSISTENCY, and at
        once after this handle's own writes. Each version shares one cache of loaded indexes."""
        now = time.monotonic()
        writes = self._writes
        if writes != self._read_writes or now - self._read_at >= _READ_CONSISTENCY.total_seconds():
            reader = self._reader_dataset
            latest = reader.latest_version
            if latest != reader.version:
                self._reader_dataset = reader.checkout_version(latest)
            # Counted before the look: a write committed meanwhile makes the next lookup look again.
            self._read_at, self._read_writes = now, writes
        return self._reader_dataset

    def _wrote(self) -> None:
        """Have this handle's next lookup read the version its own write made."""
        self._writes += 1

    def _note_use(self, key: str) -> None:
        now = self._clock()
        if not self._pending_uses:
            self._pending_since = now
        self._pending_uses[key] = now
        due = (
            len(self._pending_uses) >= _WRITE_USES_EVERY
            or now - self._pending_since >= _WRITE_USES_AFTER_S
        )
        if due and now >= self._write_uses_after:
            try:
                self.write_uses()
            except Exception as exc:  # the hit stands; its uses wait a while for the next try
                self._write_uses_after = now + _WRITE_USES_AFTER_S
                log.warning(
                    "cache uses not written",
                    extra={"error": str(exc)},
                    exc_info=not isinstance(exc, TransientError),
                )

    def close(self) -> None:
        """Write the pending uses now rather than at exit, where the directory may be gone (a
        temporary one); the handle is not to be used after. Raises as :meth:`write_uses`."""
        _OPEN_CACHES.discard(self)
        self.write_uses()

    def write_uses(self) -> None:
        """Append the uses noted since the last write to the uses table.

        Raises:
            TransientError: the table could not be written (``cache_write_failed``); the uses
                stay pending.
        """
        uses, self._pending_uses = self._pending_uses, {}
        if not uses:
            return
        try:
            self._uses.add(_arrow_table(key=list(uses), used_at=list(uses.values())))
        except Exception as exc:
            for key, used_at in uses.items():
                self._pending_uses[key] = max(used_at, self._pending_uses.get(key, used_at))
            if isinstance(exc, OSError):
                raise TransientError(
                    f"cache uses not written: {exc}", code="cache_write_failed"
                ) from exc
            raise

    def _delete(self, *conditions: str) -> int:
        """Delete the entries matching any of ``conditions``; return how many were deleted."""
        # A handle's view may lag by _READ_CONSISTENCY, and a delete on it leaves the rows other
        # processes added since: an erasure must not.
        self._table.checkout_latest()
        before = self._table.count_rows()
        for where in conditions:
            self._table.delete(where)
        self._wrote()
        deleted = before - self._table.count_rows()
        if deleted:
            log.info("cache entries deleted", extra={"entries": deleted})
        return deleted

    def _lookup_exact(self, keys: list[str], fits: _Fits) -> tuple[CacheHit, str] | None:
        rows = (
            self._reader()
            .to_table(
                columns=["prompt", "answer_text", "completion_tokens", "created_at", "params_key"],
                filter=f"key IN ({', '.join(map(sql_string, keys))})",
                limit=len(keys),
            )
            .to_pylist()
        )
        for row in rows:
            if fits(row):
                return _hit(row, similarity=1.0, kind="exact"), row["params_key"]
        return None

    def _nearest(self, vector: Any, limit: int, where: str | None = None) -> list[dict[str, Any]]:
        """The ``limit`` entries nearest ``vector`` (of those matching ``where``), nearest first."""
        nearest = {
            "column": "vector",
            "q": vector,
            "k": limit,
            "metric": "cosine",
            "nprobes": _NPROBES,
            "refine_factor": _RESCORED // limit,
        }
        columns = ["prompt", "answer_text", "completion_tokens", "created_at", "_distance"]
        return (
            self._reader()
            .to_table(
                columns=[*columns, "model_id", "params_key"],
                nearest=nearest,
                filter=where,
                prefilter=where is not None,
            )
            .to_pylist()
        )

    def _lookup_semantic(
        self,
        model_id: str,
        prompt: str,
        vector: np.ndarray,
        params_keys: tuple[str, ...],
        fits: _Fits,
    ) -> tuple[CacheHit, str] | None:
        embed = _KnownVectors(self.embedder, {prompt: vector})
        nearest = self._nearest(vector, _NEAREST)
        rows = [
            row
            for row in nearest
            if row["model_id"] == model_id and row["params_key"] in params_keys
        ][:_CANDIDATES]
        crowded = len(nearest) == _NEAREST and _similarity(nearest[-1]) >= self.similarity_threshold
        if crowded and len(rows) < _CANDIDATES:
            scope = (
                f"model_id = {sql_string(model_id)} "
                f"AND params_key IN ({', '.join(map(sql_string, params_keys))})"
            )
            rows = self._nearest(vector, _CANDIDATES, where=scope)
        for row in rows:
            similarity = _similarity(row)
            if similarity < self.similarity_threshold:
                break
            if not fits(row):  # expired (not yet evicted), or too long for the job
                continue
            reason = near_miss_reason(prompt, row["prompt"], similarity=similarity, embed=embed)
            if reason is None:
                return _hit(row, similarity=similarity, kind="semantic"), row["params_key"]
            log.debug("semantic candidate refused", extra={"reason": reason})
        return None


@dataclass(frozen=True)
class _Fits:
    """Whether a row found may serve: made after ``made_after``, no longer than the budget."""

    made_after: float
    max_completion_tokens: int | None

    def __call__(self, row: dict[str, Any]) -> bool:
        fresh = row["created_at"] >= self.made_after
        budget = self.max_completion_tokens
        return fresh and (budget is None or row["completion_tokens"] <= budget)


class _KnownVectors:
    """The embedder, for the near-miss guard, reusing the vectors a lookup already has."""

    def __init__(self, embedder: Embedder, known: dict[str, np.ndarray]) -> None:
        self._embedder = embedder
        self._known = known

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(text for text in texts if text not in self._known))
        if missing:
            self._known.update(zip(missing, self._embedder.embed(missing), strict=True))
        return np.stack([self._known[text] for text in texts])


_OPEN_CACHES: weakref.WeakSet[SemanticCache] = weakref.WeakSet()


@atexit.register
def _write_pending_uses() -> None:
    """Write every open cache's pending uses as the process exits: a job's process looks up
    once and exits long before a batch fills."""
    for cache in list(_OPEN_CACHES):
        try:
            cache.write_uses()
        except Exception as exc:  # at exit, with nothing left to tell
            log.warning("cache uses not written at exit", extra={"error": str(exc)})


def _index_new_rows(dataset: Any, *, merge_all: bool) -> None:
    """Index the rows no index holds yet into each index's second segment, merging any newer
    segments into it, or, with ``merge_all``, merge all the index's segments into one."""
    merges: dict[int, list[str]] = {}
    for index in dataset.describe_indices():
        merge = _MERGE_SEGMENTS if merge_all else len(index.segments) - 1
        merges.setdefault(merge, []).append(index.name)
    for merge, names in merges.items():
        dataset.optimize.optimize_indices(num_indices_to_merge=merge, index_names=names)


def _latest(table: Any) -> Any:
    dataset = table.to_lance()
    return dataset.checkout_version(dataset.latest_version)


def _latest_uses(dataset: Any) -> Any:
    """Each key's latest recorded use in the uses table ``dataset``, as a table (key, used_at)."""
    uses = dataset.to_table(columns=["key", "used_at"])
    latest = uses.group_by("key").aggregate([("used_at", "max")])
    return latest.select(["key", "used_at_max"]).rename_columns(["key", "used_at"])


def _keys_in(keys: list[str]) -> list[str]:
    """Filters matching ``keys``, _KEYS_PER_DELETE keys each."""
    return [
        f"key IN ({', '.join(map(sql_string, keys[start : start + _KEYS_PER_DELETE]))})"
        for start in range(0, len(keys), _KEYS_PER_DELETE)
    ]


def _arrow_table(**columns: Any) -> Any:
    import pyarrow as pa

    return pa.table(columns)


def _retraining(dataset: Any) -> bool:
    """Whether a maintenance pass is retraining the table's vector index now."""
    since = dataset.config().get(_RETRAINING)
    return since is not None and time.time() - float(since) < _RETRAIN_MARKER_S


def _similarity(row: dict[str, Any]) -> float:
    # Rounding can put a distance a hair outside [0, 2]; the guard takes only [-1, 1].
    return min(1.0, max(-1.0, 1.0 - float(row["_distance"])))


def _hit(row: dict[str, Any], *, similarity: float, kind: Literal["exact", "semantic"]) -> CacheHit:
    return CacheHit(
        answer_text=row["answer_text"],
        completion_tokens=int(row["completion_tokens"]),
        similarity=similarity,
        kind=kind,
        cached_prompt=row["prompt"],
    )
