"""An idle node notices registry updates on anvil through its update poll, with no job at all."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fabstir.chain import ChainClient, Devnet
from fabstir.models import (
    ChainModelRegistry,
    ModelDiskCache,
    ModelManager,
    ModelRecord,
    UpdatePoller,
    file_sha256,
)
from fabstir.service import ServiceGroup
from fabstir.settings import ANVIL_KEYS, ModelSpec
from tests.integration.models.conftest import FileServer
from tests.support.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.integration

POLL_S = 0.05
BAD_SHA256 = "ab" * 32


class ReadCounter:
    """The chain registry, counting reads so the test can wait for the poll to come round."""

    def __init__(self, registry: ChainModelRegistry) -> None:
        self.registry = registry
        self.reads = 0

    def model(self, model_id: str) -> ModelRecord:
        self.reads += 1
        return self.registry.model(model_id)


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(POLL_S)


@contextmanager
def _running(poller: UpdatePoller) -> Iterator[None]:
    """Run the poller as `fabstir-node run` does: a service in a ServiceGroup."""
    group = ServiceGroup({"model-updates": poller})
    exit_codes: list[int] = []
    thread = threading.Thread(target=lambda: exit_codes.append(group.run()))
    thread.start()
    try:
        yield
    finally:
        group.request_stop()
        thread.join(timeout=60)
    assert exit_codes == [0], "the poll service ended on its own"


def test_an_idle_node_downloads_verifies_and_switches_to_an_update_and_refuses_a_bad_one(
    tiny_model: ModelSpec, tmp_path: Path, file_server: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    www = tmp_path / "www"
    v2 = write_tiny_gguf(www / "v2.gguf", seed=8)
    write_tiny_gguf(www / "v3.gguf", seed=9)
    disk = ModelDiskCache(tmp_path / "cache", 10**8)
    with Devnet(deployment_file=tmp_path / "devnet.json", models=[tiny_model]) as net:
        owner = ChainClient(net, ANVIL_KEYS[0])
        registry = ReadCounter(ChainModelRegistry(ChainClient(net, ANVIL_KEYS[1])))
        manager = ModelManager(registry, disk, [tiny_model.id], registry_ttl_s=5)
        manager.pull(tiny_model.id)
        with _running(UpdatePoller(manager, POLL_S)), caplog.at_level(logging.WARNING):
            owner.update_model(tiny_model.id, file_sha256(v2), f"{file_server.url}/v2.gguf")
            _wait_until(
                lambda: getattr(manager.in_force(tiny_model.id), "sha256", None) == file_sha256(v2),
                "the update to take over",
            )
            v2_cached = disk.get(file_sha256(v2))
            assert v2_cached is not None and file_sha256(v2_cached) == file_sha256(v2)

            # The registry records a hash v3's bytes do not have: the download fails to verify.
            owner.update_model(tiny_model.id, BAD_SHA256, f"{file_server.url}/v3.gguf")
            _wait_until(
                lambda: any("model update failed" in r.message for r in caplog.records),
                "the bad version to be refused",
            )
            downloads = len(file_server.ranges)
            reads = registry.reads
            _wait_until(lambda: registry.reads >= reads + 3, "three more checks")
            in_force = manager.in_force(tiny_model.id)

    assert in_force is not None and in_force.sha256 == file_sha256(v2), "the old version was lost"
    assert len(file_server.ranges) == downloads, "the refused version was downloaded again"
    assert {entry.sha256 for entry in disk.entries()} == {tiny_model.sha256, file_sha256(v2)}
    assert not any(path.name.startswith(BAD_SHA256) for path in disk.directory.iterdir())
