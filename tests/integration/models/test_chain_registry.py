"""Model ids resolve through our ModelRegistry contract on anvil."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.chain import ChainClient, Devnet, model_id_of
from fabstir.errors import JobRejected
from fabstir.models import ChainModelRegistry, ModelDiskCache, ModelManager, file_sha256
from fabstir.settings import ANVIL_KEYS, ModelSpec

pytestmark = pytest.mark.integration


def test_a_model_pulls_from_the_uri_and_hash_recorded_on_chain(
    tiny_model: ModelSpec, tmp_path: Path
) -> None:
    retired_file = tmp_path / "retired.gguf"
    retired_file.write_bytes(b"old weights")
    retired = ModelSpec(id="retired", uri=str(retired_file), sha256=file_sha256(retired_file))
    with Devnet(deployment_file=tmp_path / "devnet.json", models=[tiny_model, retired]) as net:
        ChainClient(net, ANVIL_KEYS[0]).deactivate_model("retired")
        registry = ChainModelRegistry(ChainClient(net, ANVIL_KEYS[1]))
        record = registry.model(model_id_of(tiny_model.id))
        assert (record.name, record.sha256, record.uri, record.active) == (
            tiny_model.id,
            tiny_model.sha256,
            tiny_model.uri,
            True,
        )
        disk = ModelDiskCache(tmp_path / "cache", 10**8)
        manager = ModelManager(registry, disk, [tiny_model.id, "retired", "never-added"])
        local = manager.pull(tiny_model.id)
        assert local.sha256 == tiny_model.sha256 and file_sha256(Path(local.path)) == local.sha256
        with pytest.raises(JobRejected) as inactive:
            manager.pull("retired")
        assert inactive.value.code == "model_inactive"
        with pytest.raises(JobRejected) as unknown:
            manager.pull("never-added")
        assert unknown.value.code == "unknown_model"
        statuses = {status.name: status for status in manager.self_check()}
    assert statuses[tiny_model.id].ok
    assert not statuses["retired"].ok and not statuses["never-added"].ok
