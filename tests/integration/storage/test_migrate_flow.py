"""The migrate flow end to end: local stage → moto S3 (storage) and another directory (cache)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fabstir.errors import IntegrityError
from fabstir.settings import load_settings
from fabstir.storage import JobEntry, JobIndex, open_store, put_content
from tests.conftest import S3Server
from tests.support.artifacts import latest_table_artifact

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def test_migrate_flow_copies_verifies_and_reports(
    prefect_api: None,
    s3_server: S3Server,
    isolated_environment: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lancedb

    from flows.migrate import migrate

    settings = load_settings()
    store = open_store(settings.storage)
    uri, digest = put_content(store, b"a result record", "results")
    JobIndex(store).record(JobEntry(7, "0x" + "ab" * 20, store.key_of(uri), digest))
    lancedb.connect(settings.cache.uri).create_table("semantic_cache", [{"vector": [0.1, 0.2]}])
    (settings.home / "models").mkdir(parents=True)
    (settings.home / "models" / "tiny.gguf").write_bytes(b"GGUF" + bytes(1000))

    target = s3_server.storage_settings("fabstir-migrate", tmp_path.name)
    monkeypatch.setenv("FABSTIR_STORAGE__S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("FABSTIR_STORAGE__S3_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("FABSTIR_STORAGE__S3_SECRET_ACCESS_KEY", s3_server.secret)
    cache_target = tmp_path / "cache-copy"
    models_target = f"{target.url}/models"

    counts = migrate(target.url + "/storage", f"file://{cache_target}", models_target)

    assert [(c.part, c.failed) for c in counts] == [("storage", 0), ("cache", 0), ("models", 0)]
    assert counts[0].copied == 3  # result, job entry, renter pointer
    copied = open_store(target, target.url + "/storage")
    assert JobIndex(copied).lookup(7) == JobEntry(7, "0x" + "ab" * 20, store.key_of(uri), digest)
    assert lancedb.connect(str(cache_target)).open_table("semantic_cache").count_rows() == 1
    assert open_store(target, models_target).get("tiny.gguf") == b"GGUF" + bytes(1000)
    rows = latest_table_artifact("migration-counts")
    assert [row["part"] for row in rows] == ["storage", "cache", "models"]
    assert all(row["failed"] == 0 for row in rows)

    again = migrate(target.url + "/storage", f"file://{cache_target}", models_target)
    assert sum(c.copied for c in again) == 0
    assert [c.skipped for c in again] == [c.copied for c in counts]


def test_migrate_flow_fails_when_an_object_does_not_verify(
    prefect_api: None, isolated_environment: Path, tmp_path: Path
) -> None:
    from flows.migrate import migrate

    settings = load_settings()
    store = open_store(settings.storage)
    uri, _ = put_content(store, b"honest", "results")
    store.put(store.key_of(uri), b"tampered")
    with pytest.raises(IntegrityError):
        migrate(f"file://{tmp_path / 'target'}")
