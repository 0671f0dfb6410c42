from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.chain import model_id_of
from fabstir.errors import JobRejected, ModelIntegrityError
from fabstir.models import (
    ModelDiskCache,
    ModelManager,
    ModelRecord,
    SettingsModelRegistry,
    file_sha256,
)
from fabstir.settings import ModelSpec


class RepointableRegistry:
    """A registry whose entry can be pointed at new bytes.

    The on-chain ModelRegistry adds a model once and has no update call yet, so the update path
    is exercised through this stand-in (same Protocol as the settings and chain readers).
    """

    def __init__(self, record: ModelRecord) -> None:
        self.record = record

    def model(self, model_id: str) -> ModelRecord:
        if model_id != self.record.id:
            raise JobRejected("unknown", code="unknown_model")
        return self.record


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

    registry.record = ModelRecord(id=record.id, name="m", sha256=v2.sha256, uri=v2.uri)
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
    registry.record = ModelRecord(id=record.id, name="m", sha256="f" * 64, uri=v1.uri)
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
