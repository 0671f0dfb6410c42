"""Migration from the local store to S3 (and back), killed half way and run again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fabstir.storage import ObjectStore, copy_objects, put_content
from tests.conftest import REPO_ROOT
from tests.integration.storage.conftest import StoreFactory

pytestmark = pytest.mark.integration

OBJECTS = 120
KILL_AFTER = 50

# Run in a child process so that it can really be killed (SIGKILL: no cleanup, no finally).
CHILD = """
import json, os, signal, sys
from fabstir.settings import StorageSettings
from fabstir.storage import copy_objects, open_store
source, target, kill_after = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
done = 0
def on_object(key, outcome):
    global done
    done += 1
    if done == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
copy_objects(
    open_store(StorageSettings(url=source)),
    open_store(StorageSettings(**target)),
    on_object=on_object,
)
"""


def _settings_of(store: ObjectStore, request: pytest.FixtureRequest) -> str:
    """The StorageSettings (as JSON) a child process opens ``store`` with."""
    settings = {"url": store.base_url}
    if store.base_url.startswith("s3://"):
        server = request.getfixturevalue("s3_server")
        settings |= {
            "s3_endpoint_url": server.endpoint_url,
            "s3_access_key_id": server.key,
            "s3_secret_access_key": server.secret,
        }
    return json.dumps(settings)


def _run_until_killed(script: str, *args: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr


def _fill(store: ObjectStore) -> dict[str, bytes]:
    for n in range(OBJECTS):
        put_content(store, f"result {n}".encode() * (n + 1), "results")
        store.put(f"jobs/{n}.json", json.dumps({"job_id": n}).encode())
    return {key: store.get(key) for key in store.list()}


def test_killed_migration_resumes_without_loss_or_duplicates(
    make_store: StoreFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source = ObjectStore(f"file://{tmp_path / 'source'}")
    expected = _fill(source)
    target = make_store("target")
    _run_until_killed(CHILD, source.base_url, _settings_of(target, request), str(KILL_AFTER))
    copied_before = set(target.list())
    assert 0 < len(copied_before) < len(expected)

    counts = copy_objects(source, target)

    assert (counts.skipped, counts.failed) == (len(copied_before), 0)
    assert counts.copied == len(expected) - len(copied_before)
    assert target.list() == sorted(expected)
    assert {key: target.get(key) for key in target.list()} == expected
    again = copy_objects(source, target)
    assert (again.copied, again.skipped, again.failed) == (0, len(expected), 0)


def test_a_corrupt_target_object_is_replaced(tmp_path: Path) -> None:
    source = ObjectStore(f"file://{tmp_path / 'source'}")
    target = ObjectStore(f"file://{tmp_path / 'target'}")
    expected = _fill(source)
    copy_objects(source, target)
    target.put("jobs/3.json", b"garbage")
    counts = copy_objects(source, target)
    assert (counts.copied, counts.skipped, counts.failed) == (1, len(expected) - 1, 0)
    assert target.get("jobs/3.json") == expected["jobs/3.json"]


def test_a_corrupt_source_object_is_reported_not_copied(tmp_path: Path) -> None:
    source = ObjectStore(f"file://{tmp_path / 'source'}")
    target = ObjectStore(f"file://{tmp_path / 'target'}")
    uri, _ = put_content(source, b"honest", "results")
    key = source.key_of(uri)
    source.put(key, b"tampered")
    counts = copy_objects(source, target)
    assert (counts.copied, counts.failed, counts.failed_keys) == (0, 1, (key,))
    assert not target.exists(key)


CHUNK = 64 * 1024


def test_objects_larger_than_a_chunk_travel_in_chunks(
    make_store: StoreFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = ObjectStore(f"file://{tmp_path / 'source'}")
    model = bytes(range(256)) * (5 * CHUNK // 256) + b"tail"  # five chunks and a bit
    source.put("models/tiny.gguf", model)
    uri, _ = put_content(source, b"result " * CHUNK, "results")
    target = make_store("target")

    def whole(self: ObjectStore, key: str) -> bytes:
        raise AssertionError(f"{key} read whole")

    monkeypatch.setattr(ObjectStore, "get", whole)
    counts = copy_objects(source, target, chunk_bytes=CHUNK)
    assert (counts.copied, counts.skipped, counts.failed) == (2, 0, 0)
    again = copy_objects(source, target, chunk_bytes=CHUNK)
    assert (again.copied, again.skipped, again.failed) == (0, 2, 0)
    monkeypatch.undo()
    assert target.get("models/tiny.gguf") == model
    assert target.get(source.key_of(uri)) == b"result " * CHUNK


def test_a_large_object_off_its_content_address_is_not_written(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    source = ObjectStore(f"file://{tmp_path / 'source'}")
    uri, _ = put_content(source, b"honest" * CHUNK, "results")
    key = source.key_of(uri)
    source.put(key, b"tampered" * CHUNK)  # many chunks: the write has begun when it is caught
    target = make_store("target")
    counts = copy_objects(source, target, chunk_bytes=CHUNK)
    assert (counts.copied, counts.failed, counts.failed_keys) == (0, 1, (key,))
    assert not target.exists(key)
    assert target.list() == []


@pytest.mark.parametrize("chunk_bytes", [0, -1])
def test_a_chunk_size_below_one_byte_is_refused(tmp_path: Path, chunk_bytes: int) -> None:
    source = ObjectStore(f"file://{tmp_path / 'source'}")
    source.put("k", b"x")
    target = ObjectStore(f"file://{tmp_path / 'target'}")
    with pytest.raises(ValueError, match="chunk_bytes"):
        copy_objects(source, target, chunk_bytes=chunk_bytes)
    with pytest.raises(ValueError, match="chunk_bytes"):
        list(source.get_chunks("k", chunk_bytes))
    assert target.list() == []


# A writer killed mid-object (SIGKILL: no cleanup). Its chunks pass s3fs's 50 MiB block, so the
# S3 multipart upload has begun; on a local store its temporary file exists.
KILLED_WRITER = """
import json, os, signal, sys
from fabstir.settings import StorageSettings
from fabstir.storage import open_store
target = open_store(StorageSettings(**json.loads(sys.argv[1])))
def chunks():
    for _ in range(6):
        yield b"x" * (10 * 1024 * 1024)
    os.kill(os.getpid(), signal.SIGKILL)
target.put_chunks("models/big.gguf", chunks())
"""


def test_a_migration_removes_what_a_killed_writer_left_at_the_target(
    make_store: StoreFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = make_store("target")
    _run_until_killed(KILLED_WRITER, _settings_of(target, request))
    assert target.list() == []
    if target.base_url.startswith("file://"):
        # Too young to tell from a write in progress: left alone. (moto dates every multipart
        # upload 2010-11-10, so on S3 the age check cannot be seen here.)
        assert target.remove_abandoned_writes(older_than_s=3600) == 0

    source = ObjectStore(f"file://{tmp_path / 'source'}")
    source.put("jobs/1.json", b"{}")
    counts = copy_objects(source, target, abandoned_after_s=0)

    assert (counts.copied, counts.abandoned_removed) == (1, 1)
    assert target.remove_abandoned_writes(older_than_s=0) == 0
    assert target.list() == ["jobs/1.json"]
    if target.base_url.startswith("file://"):
        left = [p.name for p in Path(target.base_url[len("file://") :]).rglob("*") if p.is_file()]
        assert left == ["1.json"]


@pytest.mark.parametrize("older_than_s", [-1.0, float("nan")])
def test_a_negative_abandoned_age_is_refused(tmp_path: Path, older_than_s: float) -> None:
    with pytest.raises(ValueError, match="older_than_s"):
        ObjectStore(f"file://{tmp_path}").remove_abandoned_writes(older_than_s)
