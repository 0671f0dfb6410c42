from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from fabstir.chain import model_id_of
from fabstir.errors import ConfigError, JobRejected, ModelIntegrityError
from fabstir.models import (
    ModelDiskCache,
    ModelManager,
    ModelRecord,
    SettingsModelRegistry,
    file_sha256,
)
from fabstir.settings import ModelSpec, load_settings


class RepointableRegistry:
    """A registry whose entry can be pointed at new bytes, as the chain's ``updateModel`` does.

    Stands in for the on-chain registry (same Protocol) so the update rules run without anvil;
    tests/integration/models/test_chain_registry.py runs them against the contract.
    """

    def __init__(self, *records: ModelRecord) -> None:
        self.records = {record.id: record for record in records}

    def point(self, record: ModelRecord) -> None:
        self.records[record.id] = record

    def model(self, model_id: str) -> ModelRecord:
        if model_id not in self.records:
            raise JobRejected("unknown", code="unknown_model")
        return self.records[model_id]


def _spec(tmp_path: Path, name: str, data: bytes) -> ModelSpec:
    path = tmp_path / "remote" / f"{name}.gguf"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return ModelSpec(id=name, uri=f"file://{path}", sha256=file_sha256(path))


def _manager(tmp_path: Path, specs: list[ModelSpec], budget: int = 10**6) -> ModelManager:
    disk = ModelDiskCache(tmp_path / "cache", budget)
    return ModelManager(SettingsModelRegistry(specs), disk, [spec.id for spec in specs])


def test_pull_downloads_into_the_cache_and_reuses_it(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "m1", b"weights")
    manager = _manager(tmp_path, [spec])
    first = manager.pull("m1")
    assert Path(first.path).read_bytes() == b"weights"
    assert Path(first.path).parent == tmp_path / "cache"
    (tmp_path / "remote" / "m1.gguf").unlink()  # the second pull needs no source
    assert manager.pull(model_id_of("m1")) == first


def test_a_model_this_host_does_not_serve_is_refused(tmp_path: Path) -> None:
    manager = _manager(tmp_path, [_spec(tmp_path, "m1", b"w")])
    with pytest.raises(JobRejected) as refused:
        manager.resolve(model_id_of("other"))
    assert refused.value.code == "model_not_served"


def test_a_tampered_cached_file_is_an_integrity_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "m1", b"weights")
    manager = _manager(tmp_path, [spec])
    local = manager.pull("m1")
    Path(local.path).write_bytes(b"weightz!")
    with pytest.raises(ModelIntegrityError):
        manager.pull("m1")


def test_self_check_says_which_models_cannot_be_advertised(tmp_path: Path) -> None:
    good, missing, corrupt = (_spec(tmp_path, n, n.encode()) for n in ("good", "gone", "bad"))
    manager = _manager(tmp_path, [good, missing, corrupt])
    manager.pull("good")
    Path(manager.pull("bad").path).write_bytes(b"rotten")
    statuses = {status.name: status for status in manager.self_check()}
    assert statuses["good"].ok and statuses["good"].sha256 == good.sha256
    assert not statuses["gone"].ok and statuses["gone"].problem == "not downloaded"
    assert not statuses["bad"].ok and "does not match" in (statuses["bad"].problem or "")


def test_remove_deletes_the_cached_file(tmp_path: Path) -> None:
    manager = _manager(tmp_path, [_spec(tmp_path, "m1", b"w")])
    path = Path(manager.pull("m1").path)
    assert manager.remove("m1") is True
    assert not path.exists()
    assert manager.remove("m1") is False


def test_a_new_version_is_verified_in_the_background_then_new_jobs_switch(
    tmp_path: Path,
) -> None:
    v1, v2 = _spec(tmp_path, "v1", b"version one"), _spec(tmp_path, "v2", b"version two")
    record = ModelRecord(id=model_id_of("m"), name="m", sha256=v1.sha256, uri=v1.uri)
    registry = RepointableRegistry(record)
    manager = ModelManager(registry, ModelDiskCache(tmp_path / "cache", 10**6), ["m"])
    running_job = manager.fetch(manager.resolve(record.id))

    registry.point(ModelRecord(id=record.id, name="m", sha256=v2.sha256, uri=v2.uri))
    # Until v2 is verified, new jobs still get v1.
    assert manager.resolve(record.id).sha256 == v1.sha256
    manager.wait_for_updates(timeout_s=30)
    new_job = manager.fetch(manager.resolve(record.id))
    assert new_job.sha256 == v2.sha256 and Path(new_job.path).read_bytes() == b"version two"
    assert Path(running_job.path).read_bytes() == b"version one"


def test_a_bad_new_version_keeps_the_old_one_in_force(tmp_path: Path) -> None:
    v1 = _spec(tmp_path, "v1", b"version one")
    record = ModelRecord(id=model_id_of("m"), name="m", sha256=v1.sha256, uri=v1.uri)
    registry = RepointableRegistry(record)
    manager = ModelManager(registry, ModelDiskCache(tmp_path / "cache", 10**6), ["m"])
    manager.fetch(manager.resolve(record.id))
    registry.point(ModelRecord(id=record.id, name="m", sha256="f" * 64, uri=v1.uri))
    assert manager.resolve(record.id).sha256 == v1.sha256
    manager.wait_for_updates(timeout_s=30)
    assert manager.resolve(record.id).sha256 == v1.sha256


def test_a_deactivated_model_is_refused(tmp_path: Path) -> None:
    v1 = _spec(tmp_path, "v1", b"version one")
    record = ModelRecord(id=model_id_of("m"), name="m", sha256=v1.sha256, uri=v1.uri, active=False)
    manager = ModelManager(
        RepointableRegistry(record), ModelDiskCache(tmp_path / "cache", 10**6), ["m"]
    )
    with pytest.raises(JobRejected) as refused:
        manager.resolve(record.id)
    assert refused.value.code == "model_inactive"


class FakeClock:
    """Seconds the tests move by hand, so retry waits need no sleeping."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _repointed(
    tmp_path: Path, clock: FakeClock, **waits: float
) -> tuple[ModelManager, Path, str, str]:
    """A manager serving v1 of "m" whose registry then points at a corrupt upload of v2."""
    v1 = _spec(tmp_path, "v1", b"version one")
    upload = tmp_path / "remote" / "v2.gguf"
    upload.write_bytes(b"corrupt upload")
    v2_sha = hashlib.sha256(b"version two").hexdigest()
    registry = RepointableRegistry(
        ModelRecord(id=model_id_of("m"), name="m", sha256=v1.sha256, uri=v1.uri)
    )
    disk = ModelDiskCache(tmp_path / "cache", 10**6)
    manager = ModelManager(registry, disk, ["m"], clock=clock, **waits)
    manager.fetch(manager.resolve(model_id_of("m")))
    registry.point(ModelRecord(id=model_id_of("m"), name="m", sha256=v2_sha, uri=str(upload)))
    return manager, upload, v1.sha256, v2_sha


def _in_force_after_updates(manager: ModelManager) -> str:
    manager.resolve(model_id_of("m"))
    manager.wait_for_updates(timeout_s=30)
    return manager.resolve(model_id_of("m")).sha256


def test_a_new_version_that_fails_to_verify_is_retried_after_a_doubling_wait(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    manager, upload, v1_sha, v2_sha = _repointed(
        tmp_path, clock, retry_after_s=60, max_retry_after_s=100
    )
    assert _in_force_after_updates(manager) == v1_sha  # first try at 0 s fails
    clock.now_s = 60.0
    assert _in_force_after_updates(manager) == v1_sha  # second try fails; next wait 100 s (cap)
    upload.write_bytes(b"version two")  # the operator fixes the upload
    clock.now_s = 159.0
    assert _in_force_after_updates(manager) == v1_sha, "tried again before its wait was over"
    clock.now_s = 160.0
    assert _in_force_after_updates(manager) == v2_sha


def test_a_first_download_that_fails_to_verify_is_not_repeated_until_its_wait(
    tmp_path: Path,
) -> None:
    upload = tmp_path / "remote" / "m.gguf"
    upload.parent.mkdir()
    upload.write_bytes(b"corrupt upload")
    spec = ModelSpec(id="m", uri=str(upload), sha256=hashlib.sha256(b"weights").hexdigest())
    clock = FakeClock()
    disk = ModelDiskCache(tmp_path / "cache", 10**6)
    manager = ModelManager(SettingsModelRegistry([spec]), disk, ["m"], clock=clock)
    with pytest.raises(ModelIntegrityError):
        manager.pull("m")
    upload.write_bytes(b"weights")
    with pytest.raises(ModelIntegrityError) as held_back:
        manager.pull("m")
    assert held_back.value.context["retry_in_s"] == 60.0
    assert not disk.path_for(spec.sha256).exists()
    clock.now_s = 60.0
    assert Path(manager.pull("m").path).read_bytes() == b"weights"


def test_a_verified_old_version_does_not_clear_the_wait_of_a_failed_new_one(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    manager, upload, v1_sha, _ = _repointed(tmp_path, clock)
    assert _in_force_after_updates(manager) == v1_sha
    upload.write_bytes(b"version two")
    # A running job fetching v1 succeeds; v2 must still wait.
    assert manager.fetch(manager.resolve(model_id_of("m"))).sha256 == v1_sha
    assert _in_force_after_updates(manager) == v1_sha


@pytest.mark.parametrize(("first_s", "most_s"), [(0, 60), (-1, 60), (120, 60)])
def test_wrong_retry_waits_are_refused(tmp_path: Path, first_s: float, most_s: float) -> None:
    with pytest.raises(ValueError, match="retry_after_s"):
        ModelManager(
            SettingsModelRegistry([]),
            ModelDiskCache(tmp_path, 10**6),
            [],
            retry_after_s=first_s,
            max_retry_after_s=most_s,
        )


def test_remove_deletes_every_cached_version_of_the_model(tmp_path: Path) -> None:
    v1, v2 = _spec(tmp_path, "v1", b"version one"), _spec(tmp_path, "v2", b"version two")
    registry = RepointableRegistry(
        ModelRecord(id=model_id_of("m"), name="m", sha256=v1.sha256, uri=v1.uri)
    )
    disk = ModelDiskCache(tmp_path / "cache", 10**6)
    manager = ModelManager(registry, disk, ["m"])
    manager.fetch(manager.resolve(model_id_of("m")))
    registry.point(ModelRecord(id=model_id_of("m"), name="m", sha256=v2.sha256, uri=v2.uri))
    assert _in_force_after_updates(manager) == v2.sha256
    assert len(disk.entries()) == 2
    assert manager.remove("m") is True
    assert disk.entries() == []


def test_an_adapter_gets_the_base_version_in_force(tmp_path: Path) -> None:
    base_v1, base_v2 = _spec(tmp_path, "b1", b"base one"), _spec(tmp_path, "b2", b"base two")
    adapter = _spec(tmp_path, "a", b"adapter")
    base = ModelRecord(id=model_id_of("base"), name="base", sha256=base_v1.sha256, uri=base_v1.uri)
    tuned = ModelRecord(
        id=model_id_of("tuned"),
        name="tuned",
        sha256=adapter.sha256,
        uri=adapter.uri,
        base_id=base.id,
    )
    registry = RepointableRegistry(base, tuned)
    manager = ModelManager(registry, ModelDiskCache(tmp_path / "cache", 10**6), ["base", "tuned"])
    assert manager.pull("tuned").base.sha256 == base_v1.sha256  # type: ignore[union-attr]

    registry.point(ModelRecord(id=base.id, name="base", sha256=base_v2.sha256, uri=base_v2.uri))
    # The adapter job that notices the base's update runs on the base in force, not a download.
    assert manager.pull("tuned").base.sha256 == base_v1.sha256  # type: ignore[union-attr]
    manager.wait_for_updates(timeout_s=30)
    assert manager.pull("tuned").base.sha256 == base_v2.sha256  # type: ignore[union-attr]


class CountingRegistry(RepointableRegistry):
    """Counts the registry reads, each of which is a chain call in production."""

    def __init__(self, *records: ModelRecord) -> None:
        super().__init__(*records)
        self.reads = 0

    def model(self, model_id: str) -> ModelRecord:
        self.reads += 1
        return super().model(model_id)


def test_the_registry_record_is_reused_for_its_ttl_then_an_update_is_noticed(
    tmp_path: Path,
) -> None:
    v1, v2 = _spec(tmp_path, "v1", b"version one"), _spec(tmp_path, "v2", b"version two")
    record = ModelRecord(id=model_id_of("m"), name="m", sha256=v1.sha256, uri=v1.uri)
    registry, clock = CountingRegistry(record), FakeClock()
    disk = ModelDiskCache(tmp_path / "cache", 10**6)
    manager = ModelManager(registry, disk, ["m"], registry_ttl_s=5, clock=clock)
    # A job's claim resolves the model, then its fetch step resolves it again.
    running_job = manager.fetch(manager.resolve(record.id))
    assert manager.resolve(record.id).sha256 == v1.sha256
    assert registry.reads == 1

    registry.point(ModelRecord(id=record.id, name="m", sha256=v2.sha256, uri=v2.uri))
    clock.now_s = 4.9
    assert manager.resolve(record.id).sha256 == v1.sha256
    assert registry.reads == 1, "read again before the TTL was over"
    clock.now_s = 5.0
    assert manager.resolve(record.id).sha256 == v1.sha256  # v2 downloads in the background
    assert registry.reads == 2
    manager.wait_for_updates(timeout_s=30)
    assert manager.fetch(manager.resolve(record.id)).sha256 == v2.sha256
    assert registry.reads == 2
    assert Path(running_job.path).read_bytes() == b"version one"

    registry.point(ModelRecord(id=record.id, name="m", sha256=v2.sha256, uri=v2.uri, active=False))
    clock.now_s = 10.0
    with pytest.raises(JobRejected) as refused:
        manager.resolve(record.id)
    assert refused.value.code == "model_inactive"


def test_with_a_zero_ttl_every_resolve_reads_the_registry(tmp_path: Path) -> None:
    v1 = _spec(tmp_path, "v1", b"version one")
    registry = CountingRegistry(
        ModelRecord(id=model_id_of("m"), name="m", sha256=v1.sha256, uri=v1.uri)
    )
    manager = ModelManager(
        registry, ModelDiskCache(tmp_path / "cache", 10**6), ["m"], registry_ttl_s=0
    )
    for _ in range(3):
        manager.resolve(model_id_of("m"))
    assert registry.reads == 3


def test_a_model_the_registry_does_not_know_is_asked_about_again(tmp_path: Path) -> None:
    registry = CountingRegistry()
    manager = ModelManager(
        registry, ModelDiskCache(tmp_path / "cache", 10**6), ["m"], registry_ttl_s=60
    )
    for _ in range(2):
        with pytest.raises(JobRejected):
            manager.resolve(model_id_of("m"))
    assert registry.reads == 2


@pytest.mark.parametrize("ttl_s", [-1.0, float("nan")])
def test_a_wrong_registry_ttl_is_refused(tmp_path: Path, ttl_s: float) -> None:
    with pytest.raises(ValueError, match="registry_ttl_s"):
        ModelManager(
            SettingsModelRegistry([]), ModelDiskCache(tmp_path, 10**6), [], registry_ttl_s=ttl_s
        )


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "inf"])
def test_a_wrong_registry_ttl_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FABSTIR_MODELS__REGISTRY_TTL_S", value)
    with pytest.raises(ConfigError, match="FABSTIR_MODELS__REGISTRY_TTL_S"):
        load_settings()


def test_the_registry_ttl_setting_is_a_few_seconds_and_0_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert 0 < load_settings().models.registry_ttl_s <= 10
    monkeypatch.setenv("FABSTIR_MODELS__REGISTRY_TTL_S", "0")
    assert load_settings().models.registry_ttl_s == 0


def _record(tmp_path: Path, name: str, data: bytes, **fields: object) -> ModelRecord:
    spec = _spec(tmp_path, f"{name}-{len(data)}", data)
    return ModelRecord(id=model_id_of(name), name=name, sha256=spec.sha256, uri=spec.uri, **fields)


def test_a_check_reads_the_registry_past_its_ttl_and_switches_with_no_job(tmp_path: Path) -> None:
    v1, v2 = _record(tmp_path, "m", b"version one"), _record(tmp_path, "m", b"version two!")
    registry = CountingRegistry(v1)
    disk = ModelDiskCache(tmp_path / "cache", 10**6)
    manager = ModelManager(registry, disk, ["m"], registry_ttl_s=3600, clock=FakeClock())
    manager.pull("m")
    registry.point(v2)

    manager.check_for_updates()
    manager.wait_for_updates(timeout_s=30)

    assert manager.in_force("m") == v2
    assert registry.reads == 2, "the check read the registry although its record was fresh"
    assert disk.get(v2.sha256) is not None
    # Jobs within the TTL see the record the check read, with no chain read of their own.
    assert manager.resolve(v2.id) == v2 and registry.reads == 2


def test_a_check_downloads_no_model_that_was_never_fetched(tmp_path: Path) -> None:
    registry = CountingRegistry(_record(tmp_path, "m", b"weights"))
    disk = ModelDiskCache(tmp_path / "cache", 10**6)
    manager = ModelManager(registry, disk, ["m"])
    manager.check_for_updates()
    manager.wait_for_updates(timeout_s=30)
    assert manager.in_force("m") is None and disk.entries() == []


def test_a_check_skips_unknown_and_deactivated_models_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = _record(tmp_path, "m", b"version one")
    registry = CountingRegistry(v1, _record(tmp_path, "gone", b"old", active=False))
    manager = ModelManager(
        registry, ModelDiskCache(tmp_path / "cache", 10**6), ["never", "gone", "m"]
    )
    manager.pull("m")
    with caplog.at_level(logging.INFO, logger="fabstir.models.manager"):
        manager.check_for_updates()
    codes = {record.code for record in caplog.records if hasattr(record, "code")}
    assert codes == {"unknown_model", "model_inactive"}
    assert manager.in_force("m") == v1
