from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from fabstir.settings import StorageSettings
from fabstir.storage import ObjectStore, open_store
from tests.conftest import S3Server

StoreFactory = Callable[[str], ObjectStore]


@pytest.fixture(params=["file", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Open stores named ``name`` on one backend: a local directory, or moto's S3 server."""
    run = uuid.uuid4().hex[:12]  # the S3 server lives for the session: keep tests apart

    def make(name: str) -> ObjectStore:
        if request.param == "file":
            return open_store(StorageSettings(url=f"file://{tmp_path / name}"))
        server: S3Server = request.getfixturevalue("s3_server")
        return open_store(server.storage_settings("fabstir-tests", f"{run}/{name}"))

    return make


@pytest.fixture
def store(make_store: StoreFactory) -> ObjectStore:
    return make_store("objects")
