"""Model ids resolve through our ModelRegistry contract on anvil: versions, updates, adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.chain import ChainClient, Devnet, model_id_of
from fabstir.errors import JobRejected
from fabstir.models import (
    ChainModelRegistry,
    EnginePool,
    ModelDiskCache,
    ModelManager,
    SamplingParams,
    file_sha256,
)
from fabstir.settings import ANVIL_KEYS, EngineSettings, ModelSpec
from tests.support.tiny_gguf import write_tiny_gguf, write_tiny_lora

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "the cat sat"}]
ANSWER = SamplingParams(max_tokens=24)


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


def test_an_update_on_chain_switches_new_jobs_once_verified_and_running_ones_finish(
    tiny_model: ModelSpec, tmp_path: Path
) -> None:
    v2 = write_tiny_gguf(tmp_path / "v2.gguf", seed=8)
    model_id = model_id_of(tiny_model.id)
    disk = ModelDiskCache(tmp_path / "cache", 10**8)
    pool = EnginePool(EngineSettings(n_ctx=256), disk)
    with Devnet(deployment_file=tmp_path / "devnet.json", models=[tiny_model]) as net:
        manager = ModelManager(
            ChainModelRegistry(ChainClient(net, ANVIL_KEYS[1])), disk, [tiny_model.id]
        )
        v1_model = manager.fetch(manager.resolve(model_id))
        v1_answer = pool.engine_for(v1_model).stream(USER, ANSWER).text()
        running = iter(pool.engine_for(v1_model).stream(USER, ANSWER))
        first_piece = next(running)

        ChainClient(net, ANVIL_KEYS[0]).update_model(tiny_model.id, file_sha256(v2), v2.as_uri())
        # The job that notices the update still gets v1: v2 downloads in the background.
        assert manager.resolve(model_id).sha256 == tiny_model.sha256
        manager.wait_for_updates(timeout_s=60)
        v2_model = manager.fetch(manager.resolve(model_id))
        v2_answer = pool.engine_for(v2_model).stream(USER, ANSWER).text()

    assert v2_model.sha256 == file_sha256(v2) == file_sha256(Path(v2_model.path))
    assert first_piece.text + "".join(piece.text for piece in running) == v1_answer
    assert v2_answer != v1_answer
    assert {entry.sha256 for entry in disk.entries()} == {tiny_model.sha256, v2_model.sha256}
    pool.close()


def test_a_lora_adapter_resolves_through_the_chain_to_its_base(
    tiny_model: ModelSpec, tmp_path: Path
) -> None:
    adapter = write_tiny_lora(tmp_path / "lora.gguf")
    lora = ModelSpec(
        id="tiny-tuned", uri=str(adapter), sha256=file_sha256(adapter), base=tiny_model.id
    )
    disk = ModelDiskCache(tmp_path / "cache", 10**8)
    pool = EnginePool(EngineSettings(n_ctx=256), disk)
    with Devnet(deployment_file=tmp_path / "devnet.json", models=[lora, tiny_model]) as net:
        registry = ChainModelRegistry(ChainClient(net, ANVIL_KEYS[1]))
        assert registry.model(model_id_of(lora.id)).base_id == model_id_of(tiny_model.id)
        assert registry.model(model_id_of(tiny_model.id)).base_id is None
        manager = ModelManager(registry, disk, [tiny_model.id, lora.id])
        tuned = manager.pull(lora.id)
        statuses = manager.self_check()
    assert tuned.sha256 == lora.sha256 and tuned.base is not None
    assert tuned.base.sha256 == tiny_model.sha256
    assert all(status.ok for status in statuses)
    tuned_answer = pool.engine_for(tuned).stream(USER, ANSWER).text()
    assert tuned_answer != pool.engine_for(tuned.base).stream(USER, ANSWER).text()
    pool.close()
