"""Storage settings → store options, retries, the job index's inputs, and migration planning."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from fabstir.errors import ConfigError, TransientError
from fabstir.settings import StorageSettings, load_settings
from fabstir.storage import JobEntry, JobIndex, ObjectStore, open_store, plan_migration
from fabstir.storage.store import storage_options

RENTER = "0x" + "ab" * 20


def test_s3_urls_get_endpoint_and_credentials() -> None:
    settings = StorageSettings(
        url="s3://bucket/prefix",
        s3_endpoint_url="http://127.0.0.1:9000",
        s3_access_key_id=SecretStr("id"),
        s3_secret_access_key=SecretStr("secret"),
    )
    options = storage_options(settings, "s3://bucket/prefix")
    # One session per process, so fsspec's instance cache keeps reusing one S3 client.
    assert options.pop("session") is storage_options(settings, "s3://other")["session"]
    assert options == {
        "use_listings_cache": False,
        "max_concurrency": 1,
        "endpoint_url": "http://127.0.0.1:9000",
        "key": "id",
        "secret": "secret",
    }
    assert storage_options(settings, "file:///tmp/x") == {}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FABSTIR_STORAGE__S3_ENDPOINT_URL", "ftp://example"),
        ("FABSTIR_STORAGE__ATTEMPTS", "0"),
        ("FABSTIR_CACHE__TTL_S", "0"),
        ("FABSTIR_CACHE__MAX_ENTRIES", "0"),
        ("FABSTIR_CACHE__INDEX_MIN_ROWS", "10"),
    ],
)
def test_wrong_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_open_store_needs_a_url_and_attempts() -> None:
    with pytest.raises(ValueError):
        open_store(StorageSettings(url=None))
    with pytest.raises(ValueError):
        ObjectStore("memory://x", attempts=0)


def test_outages_are_retried_then_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An outage that heals cannot be produced on a local directory: the backend call is patched.
    monkeypatch.setattr("fabstir.storage.store._RETRY_DELAY_S", 0)
    store = ObjectStore(f"file://{tmp_path}", attempts=3)
    store.put("k", b"v")
    calls = []
    real = store._fs.cat_file

    def flaky(path: str) -> bytes:
        calls.append(path)
        if len(calls) < 3:
            raise ConnectionError("connection reset")
        return real(path)

    monkeypatch.setattr(store._fs, "cat_file", flaky)
    assert store.get("k") == b"v" and len(calls) == 3
    calls.clear()
    monkeypatch.setattr(store, "attempts", 2)
    with pytest.raises(TransientError):
        store.get("k")
    assert len(calls) == 2


@pytest.mark.parametrize("renter", ["", "0x1234", "ab" * 20, "0x" + "zz" * 20, "0x../../etc"])
def test_the_job_index_refuses_bad_renters(renter: str) -> None:
    index = JobIndex(ObjectStore("memory://fabstir-index-renters"))
    with pytest.raises(ValueError):
        index.record(JobEntry(1, renter, "results/x", "0x00"))
    with pytest.raises(ValueError):
        index.erase_renter(renter)


@pytest.mark.parametrize("job_id", [-1, True, "7"])
def test_the_job_index_refuses_bad_job_ids(job_id: object) -> None:
    index = JobIndex(ObjectStore("memory://fabstir-index-jobs"))
    with pytest.raises(ValueError):
        index.record(JobEntry(job_id, RENTER, "results/x", "0x00"))  # type: ignore[arg-type]


def test_migration_plan_lists_only_the_targets_given(isolated_environment: Path) -> None:
    settings = load_settings()
    parts = plan_migration(settings, "s3://bucket/storage")
    assert [p.name for p in parts] == ["storage"]
    parts = plan_migration(settings, "s3://b/s", "s3://b/c", "s3://b/m")
    assert [(p.name, p.target_url) for p in parts] == [
        ("storage", "s3://b/s"),
        ("cache", "s3://b/c"),
        ("models", "s3://b/m"),
    ]
    assert parts[1].source_url == f"file://{settings.cache.uri}"


def test_migrating_onto_the_source_is_refused(isolated_environment: Path) -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="same URL"):
        plan_migration(settings, settings.storage.url + "/")
