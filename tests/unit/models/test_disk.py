from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.errors import ConfigError, TransientError
from fabstir.models import ModelDiskCache


def _put(disk: ModelDiskCache, sha256: str, size: int) -> None:
    disk.make_room(size)
    disk.directory.mkdir(parents=True, exist_ok=True)
    disk.path_for(sha256).write_bytes(b"w" * size)
    disk.add(sha256, f"model-{sha256}")


def test_least_recently_used_files_are_evicted_first(tmp_path: Path) -> None:
    disk = ModelDiskCache(tmp_path, budget_bytes=300)
    _put(disk, "a", 100)
    _put(disk, "b", 100)
    _put(disk, "c", 100)
    assert disk.get("a") is not None  # a is now the most recently used
    _put(disk, "d", 100)
    assert [entry.sha256 for entry in disk.entries()] == ["c", "a", "d"]
    assert not disk.path_for("b").exists()


def test_a_pinned_model_is_never_evicted(tmp_path: Path) -> None:
    disk = ModelDiskCache(tmp_path, budget_bytes=200)
    _put(disk, "a", 100)
    _put(disk, "b", 100)
    disk.pin("a")
    _put(disk, "c", 100)
    assert {entry.sha256 for entry in disk.entries()} == {"a", "c"}
    disk.pin("c")
    with pytest.raises(TransientError) as full:
        disk.make_room(100)
    assert full.value.code == "model_cache_full"
    disk.unpin("c")
    disk.make_room(100)
    assert [entry.sha256 for entry in disk.entries()] == ["a"]


def test_a_model_larger_than_the_budget_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ModelDiskCache(tmp_path, budget_bytes=10).make_room(11)


def test_remove_refuses_a_loaded_model(tmp_path: Path) -> None:
    disk = ModelDiskCache(tmp_path, budget_bytes=1000)
    _put(disk, "a", 10)
    disk.pin("a")
    with pytest.raises(TransientError) as in_use:
        disk.remove("a")
    assert in_use.value.code == "model_in_use"
    disk.unpin("a")
    assert disk.remove("a") is True
    assert disk.remove("a") is False
    assert disk.get("a") is None


def test_the_index_survives_a_restart(tmp_path: Path) -> None:
    _put(ModelDiskCache(tmp_path, budget_bytes=1000), "a", 10)
    assert ModelDiskCache(tmp_path, budget_bytes=1000).get("a") == tmp_path / "a.gguf"


@pytest.mark.parametrize("budget", [0, -5])
def test_a_non_positive_budget_is_refused(tmp_path: Path, budget: int) -> None:
    with pytest.raises(ValueError):
        ModelDiskCache(tmp_path, budget_bytes=budget)
