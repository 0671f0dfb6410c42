from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fabstir.errors import ModelIntegrityError, ObjectMissing
from fabstir.models import download_verified
from fabstir.models.download import partial_path

DATA = bytes(range(256)) * 40  # 10 KiB
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> str:
    path = tmp_path / "remote" / "model.gguf"
    path.parent.mkdir()
    path.write_bytes(DATA)
    return f"file://{path}"


def test_the_file_appears_only_after_its_hash_matched(source: str, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    target = tmp_path / "cache" / "m.gguf"
    assert download_verified(source, target, SHA, progress=lambda *p: seen.append(p)) == target
    assert target.read_bytes() == DATA
    assert not partial_path(target).exists()
    assert seen[0] == (0, len(DATA)) and seen[-1] == (len(DATA), len(DATA))


def test_a_hash_mismatch_deletes_the_bytes_and_raises(source: str, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "m.gguf"
    with pytest.raises(ModelIntegrityError) as failed:
        download_verified(source, target, "0" * 64)
    assert failed.value.context["actual"] == SHA
    assert list(target.parent.iterdir()) == []


def test_a_missing_source_is_object_missing(tmp_path: Path) -> None:
    with pytest.raises(ObjectMissing):
        download_verified(f"file://{tmp_path}/absent.gguf", tmp_path / "m.gguf", SHA)


def test_an_interrupted_download_resumes_from_where_it_stopped(source: str, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "m.gguf"

    def interrupt(done: int, total: int | None) -> None:
        if done >= 4096:
            raise KeyboardInterrupt  # the operator pressed Ctrl-C

    with pytest.raises(KeyboardInterrupt):
        download_verified(source, target, SHA, progress=interrupt, chunk_bytes=1024)
    assert not target.exists()
    assert partial_path(target).read_bytes() == DATA[:4096]

    seen: list[int] = []
    download_verified(source, target, SHA, progress=lambda done, _: seen.append(done))
    assert seen[0] == 4096, "the second download did not start at the offset"
    assert target.read_bytes() == DATA


def test_leftover_bytes_longer_than_the_source_start_over(source: str, tmp_path: Path) -> None:
    target = tmp_path / "m.gguf"
    partial_path(target).write_bytes(b"x" * (len(DATA) + 1))
    download_verified(source, target, SHA)
    assert target.read_bytes() == DATA


def test_corrupt_leftover_bytes_fail_the_hash_and_are_deleted(source: str, tmp_path: Path) -> None:
    target = tmp_path / "m.gguf"
    partial_path(target).write_bytes(b"garbage")
    with pytest.raises(ModelIntegrityError):
        download_verified(source, target, SHA)
    assert not partial_path(target).exists()
    download_verified(source, target, SHA)  # and the next try starts clean
    assert target.read_bytes() == DATA
