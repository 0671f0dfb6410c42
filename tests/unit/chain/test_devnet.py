from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.chain import anvil_binary
from fabstir.errors import DependencyMissing


def test_missing_anvil_tells_to_run_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(DependencyMissing, match="npm ci") as caught:
        anvil_binary(search_from=[tmp_path])
    assert caught.value.code == "anvil_missing"


def test_anvil_is_found_from_a_subdirectory_of_an_install(tmp_path: Path) -> None:
    binary = tmp_path / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert anvil_binary(search_from=[nested]) == binary
