from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.errors import ObjectMissing, ResultIntegrityError, TransientError
from fabstir.storage import ObjectStore, get_verified, put_content, sha256_hex


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "file":
        return ObjectStore(f"file://{tmp_path / 'objects'}")
    return ObjectStore(f"memory://fabstir-{tmp_path.name}")


def test_put_then_get_round_trips(store: ObjectStore) -> None:
    uri = store.put("a/b.bin", b"payload")
    assert uri == store.uri_for("a/b.bin")
    assert store.get("a/b.bin") == b"payload"
    assert store.exists("a/b.bin")


def test_a_missing_key_is_a_clear_error(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        store.get("nothing/here")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../b", "../up"])
def test_keys_cannot_escape_the_store(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.put(key, b"x")


def test_local_writes_leave_no_partial_files(tmp_path: Path) -> None:
    store = ObjectStore(f"file://{tmp_path}")
    store.put("k", b"1" * 1000)
    store.put("k", b"2" * 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]
    assert store.get("k") == b"2" * 10


def test_content_is_stored_once_at_its_hash(store: ObjectStore) -> None:
    uri, digest = put_content(store, b"result", "results")
    again_uri, again_digest = put_content(store, b"result", "results")
    assert (uri, digest) == (again_uri, again_digest)
    assert digest == sha256_hex(b"result")
    assert uri.endswith("/results/1220" + digest[2:])
    assert get_verified(store, uri, digest) == b"result"


def test_tampered_content_raises_an_integrity_error(tmp_path: Path) -> None:
    store = ObjectStore(f"file://{tmp_path}")
    uri, digest = put_content(store, b"honest", "results")
    store.put(store.key_of(uri), b"tampered")
    with pytest.raises(ResultIntegrityError):
        get_verified(store, uri, digest)


def test_a_uri_outside_the_store_is_refused(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        get_verified(store, "file:///etc/passwd", "0x" + "0" * 64)


def test_an_unreachable_backend_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    # A regular file where a directory must be: the write fails with an OSError, not a missing key.
    store = ObjectStore(f"file://{tmp_path}", attempts=1)
    with pytest.raises(TransientError):
        store.put("file/child", b"x")
