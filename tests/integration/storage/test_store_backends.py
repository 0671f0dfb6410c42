"""One suite for every backend: the local directory and moto's S3 server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from fabstir.errors import ObjectMissing, ResultIntegrityError
from fabstir.storage import JobEntry, JobIndex, ObjectStore, get_verified, put_content, sha256_hex

pytestmark = pytest.mark.integration

RENTER = "0x" + "ab" * 20
OTHER_RENTER = "0x" + "cd" * 20


def test_put_get_exists_delete(store: ObjectStore) -> None:
    assert not store.exists("a/b.bin")
    uri = store.put("a/b.bin", b"payload")
    assert uri == store.uri_for("a/b.bin")
    assert store.exists("a/b.bin")
    assert store.get("a/b.bin") == b"payload"
    store.delete("a/b.bin")
    assert not store.exists("a/b.bin")
    store.delete("a/b.bin")  # already gone: a no-op


def test_missing_key_is_object_missing(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        store.get("nothing/here")


def test_list_returns_sorted_keys_under_a_prefix(store: ObjectStore) -> None:
    assert store.list() == []
    for key in ("results/b", "results/a", "jobs/1.json", "results/sub/c"):
        store.put(key, key.encode())
    assert store.list("results") == ["results/a", "results/b", "results/sub/c"]
    assert store.list() == ["jobs/1.json", "results/a", "results/b", "results/sub/c"]
    assert store.list("nothing") == []


def test_overwrite_replaces_the_whole_object(store: ObjectStore) -> None:
    store.put("k", b"1" * 100_000)
    store.put("k", b"2" * 10)
    assert store.get("k") == b"2" * 10
    assert store.list() == ["k"]


def test_readers_never_see_a_partial_object(store: ObjectStore) -> None:
    old, new = b"a" * 2_000_000, b"b" * 2_000_000
    store.put("big", old)
    seen: set[bytes] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(store.get("big"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(3):
            store.put("big", new)
            store.put("big", old)
    finally:
        done.set()
        reader.join()
    assert seen <= {old, new}


def test_content_addressing_and_verified_reads(store: ObjectStore) -> None:
    uri, digest = put_content(store, b"result", "results")
    assert put_content(store, b"result", "results") == (uri, digest)
    assert digest == sha256_hex(b"result")
    assert get_verified(store, uri, digest) == b"result"
    store.put(store.key_of(uri), b"tampered")
    with pytest.raises(ResultIntegrityError):
        get_verified(store, uri, digest)


def test_job_index_and_renter_erasure(store: ObjectStore) -> None:
    index = JobIndex(store)
    entries = {}
    for job_id, renter in ((1, RENTER), (2, OTHER_RENTER), (3, RENTER.upper().replace("0X", "0x"))):
        uri, digest = put_content(store, f"result of {job_id}".encode(), "results")
        entries[job_id] = JobEntry(job_id, renter, store.key_of(uri), digest)
        index.record(entries[job_id])
    assert index.lookup(2) == entries[2]
    assert index.jobs_of(RENTER) == [1, 3]
    assert index.erase_renter(RENTER) == 2
    assert index.lookup(1) is None and index.lookup(3) is None
    assert not store.exists(entries[1].result_key)
    assert not store.exists(entries[3].result_key)
    assert index.lookup(2) == entries[2] and store.exists(entries[2].result_key)
    assert index.jobs_of(RENTER) == []
    assert index.erase_renter(RENTER) == 0


def test_chunked_writes_and_reads(store: ObjectStore) -> None:
    chunks = [bytes([n]) * 1000 for n in range(7)]
    assert store.put_chunks("big", iter(chunks)) == store.uri_for("big")
    assert list(store.get_chunks("big", 1000)) == chunks
    assert b"".join(store.get_chunks("big", 3000)) == b"".join(chunks)
    store.put_chunks("one", [b"single"])  # one chunk: one plain PUT on S3
    assert store.get("one") == b"single"
    store.put_chunks("empty", [])
    assert store.get("empty") == b""
    with pytest.raises(ObjectMissing):
        list(store.get_chunks("nothing/here", 1000))


def test_a_chunked_write_that_fails_leaves_nothing(store: ObjectStore) -> None:
    store.put("kept", b"old")

    def failing() -> Iterator[bytes]:
        yield b"a" * 1000
        yield b"b" * 1000
        raise RuntimeError("source broke")

    for key in ("new", "kept"):
        with pytest.raises(RuntimeError):
            store.put_chunks(key, failing())
    assert store.list() == ["kept"]
    assert store.get("kept") == b"old"
