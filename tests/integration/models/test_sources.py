"""Model downloads from real servers: HTTP on loopback, and moto's S3 server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fabstir.chain import model_id_of
from fabstir.errors import ModelIntegrityError, ObjectMissing, TransientError
from fabstir.models import ModelDiskCache, ModelManager, SettingsModelRegistry, download_verified
from fabstir.models.download import partial_path
from fabstir.settings import ModelSpec
from fabstir.storage import storage_options
from tests.integration.models.conftest import FileServer

pytestmark = pytest.mark.integration

DATA = bytes(range(251)) * 4000  # ~1 MB, not a multiple of the chunk size
SHA = hashlib.sha256(DATA).hexdigest()


def test_an_http_download_cut_off_mid_way_resumes_with_a_range_request(
    file_server: FileServer, tmp_path: Path
) -> None:
    (tmp_path / "www" / "m.gguf").write_bytes(DATA)
    target = tmp_path / "cache" / "m.gguf"
    # The server drops the connection after 300 kB: a fault a real network produces.
    file_server.cut_after = 300_000
    with pytest.raises(TransientError) as interrupted:
        download_verified(f"{file_server.url}/m.gguf", target, SHA, chunk_bytes=10_000)
    kept = partial_path(target).stat().st_size
    assert interrupted.value.code == "model_download_failed"
    assert 0 < kept < len(DATA) and not target.exists()

    file_server.ranges.clear()
    download_verified(f"{file_server.url}/m.gguf", target, SHA)
    assert target.read_bytes() == DATA
    assert file_server.ranges and all(r and r.startswith("bytes=") for r in file_server.ranges)
    assert file_server.ranges[0].startswith(f"bytes={kept}-"), "did not resume at the offset"


def test_an_http_model_that_is_not_there_is_object_missing(
    file_server: FileServer, tmp_path: Path
) -> None:
    with pytest.raises(ObjectMissing):
        download_verified(f"{file_server.url}/absent.gguf", tmp_path / "m.gguf", SHA)


def test_wrong_bytes_over_http_leave_nothing_behind(
    file_server: FileServer, tmp_path: Path
) -> None:
    (tmp_path / "www" / "m.gguf").write_bytes(DATA + b"tampered")
    target = tmp_path / "cache" / "m.gguf"
    with pytest.raises(ModelIntegrityError):
        download_verified(f"{file_server.url}/m.gguf", target, SHA)
    assert list(target.parent.iterdir()) == []


def test_a_model_pulled_from_s3_resumes_from_its_partial_bytes(s3_server, tmp_path: Path) -> None:
    storage = s3_server.storage_settings("models-bucket")
    options = storage_options(storage, "s3://")
    import s3fs

    s3fs.S3FileSystem(**options).pipe("models-bucket/m.gguf", DATA)
    spec = ModelSpec(id="s3-model", uri="s3://models-bucket/m.gguf", sha256=SHA)
    disk = ModelDiskCache(tmp_path / "cache", 10**8)
    manager = ModelManager(
        SettingsModelRegistry([spec]), disk, [spec.id], source_options={"s3": options}
    )
    # Bytes left by an interrupted pull: the rest comes from S3 with a ranged GET.
    disk.directory.mkdir(parents=True)
    partial_path(disk.path_for(SHA)).write_bytes(DATA[:400_000])
    offsets: list[int] = []
    local = manager.pull(model_id_of("s3-model"), lambda done, _: offsets.append(done))
    assert offsets[0] == 400_000
    assert Path(local.path).read_bytes() == DATA


def test_a_job_retrying_an_interrupted_download_resumes_at_once(
    file_server: FileServer, tmp_path: Path
) -> None:
    (tmp_path / "www" / "m.gguf").write_bytes(DATA)
    spec = ModelSpec(id="http-model", uri=f"{file_server.url}/m.gguf", sha256=SHA)
    manager = ModelManager(
        SettingsModelRegistry([spec]), ModelDiskCache(tmp_path / "cache", 10**8), [spec.id]
    )
    file_server.cut_after = 300_000
    with pytest.raises(TransientError):
        manager.pull(spec.id)
    # Unlike a version that failed to verify, an interruption is not held back for a wait.
    assert Path(manager.pull(spec.id).path).read_bytes() == DATA
