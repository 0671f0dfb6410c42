from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.chain import model_id_of
from fabstir.errors import JobRejected, ModelIntegrityError
from fabstir.models import ModelCatalog, file_sha256
from fabstir.settings import ModelSpec


def _spec(path: Path, data: bytes) -> ModelSpec:
    path.write_bytes(data)
    return ModelSpec(id="m1", uri=str(path), sha256=file_sha256(path))


def test_resolves_the_on_chain_id_of_a_served_model(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "m.gguf", b"weights")
    catalog = ModelCatalog([spec], tmp_path / "dl")
    assert catalog.resolve(model_id_of("m1")) == spec
    with pytest.raises(JobRejected) as refused:
        catalog.resolve(model_id_of("other"))
    assert refused.value.code == "model_not_served"


def test_a_tampered_local_file_is_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "m.gguf", b"weights")
    catalog = ModelCatalog([spec], tmp_path / "dl")
    assert catalog.fetch(spec).sha256 == spec.sha256
    (tmp_path / "m.gguf").write_bytes(b"weightz!")
    with pytest.raises(ModelIntegrityError):
        catalog.fetch(spec)


def test_a_missing_file_is_an_integrity_error(tmp_path: Path) -> None:
    spec = ModelSpec(id="m1", uri=str(tmp_path / "absent.gguf"), sha256="0" * 64)
    with pytest.raises(ModelIntegrityError, match="missing"):
        ModelCatalog([spec], tmp_path).fetch(spec)


def test_a_remote_model_is_downloaded_verified_and_reused(tmp_path: Path) -> None:
    source = tmp_path / "remote" / "m.gguf"
    source.parent.mkdir()
    local = _spec(source, b"remote weights")
    spec = local.model_copy(update={"uri": f"memory://models-{tmp_path.name}/m.gguf"})
    import fsspec

    with fsspec.open(spec.uri, "wb") as handle:
        handle.write(b"remote weights")
    catalog = ModelCatalog([spec], tmp_path / "dl")
    fetched = catalog.fetch(spec)
    assert Path(fetched.path).read_bytes() == b"remote weights"
    assert catalog.fetch(spec).path == fetched.path


def test_a_download_with_the_wrong_hash_leaves_nothing_behind(tmp_path: Path) -> None:
    import fsspec

    spec = ModelSpec(id="m1", uri=f"memory://models-{tmp_path.name}/bad.gguf", sha256="1" * 64)
    with fsspec.open(spec.uri, "wb") as handle:
        handle.write(b"not what was promised")
    with pytest.raises(ModelIntegrityError):
        ModelCatalog([spec], tmp_path / "dl").fetch(spec)
    assert list((tmp_path / "dl").iterdir()) == []
