"""The committed artifacts must be what `npm run build:contracts` makes from the sources."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCES_DIR = REPO_ROOT / "contracts"
ARTIFACTS_DIR = Path(str(resources.files("fabstir.chain") / "artifacts"))
REBUILD_HINT = "stale artifact: run `npm run build:contracts` and commit fabstir/chain/artifacts"


def _sources() -> list[Path]:
    return sorted(SOURCES_DIR.glob("*.sol"))


def test_there_is_one_artifact_per_source() -> None:
    artifact_names = {path.stem for path in ARTIFACTS_DIR.glob("*.json")}
    assert artifact_names == {path.stem for path in _sources()}, REBUILD_HINT


@pytest.mark.parametrize("source", _sources(), ids=lambda path: path.name)
def test_artifact_records_the_current_source_hash(source: Path) -> None:
    artifact = json.loads((ARTIFACTS_DIR / f"{source.stem}.json").read_text(encoding="utf-8"))
    assert artifact["contractName"] == source.stem
    assert artifact["sourceSha256"] == hashlib.sha256(source.read_bytes()).hexdigest(), REBUILD_HINT


@pytest.mark.integration
def test_compiling_again_reproduces_the_committed_artifacts(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed to compile the contracts (and `npm ci` before it)"
    subprocess.run(
        [node, str(SOURCES_DIR / "build.mjs"), str(tmp_path)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    for source in _sources():
        committed = (ARTIFACTS_DIR / f"{source.stem}.json").read_bytes()
        rebuilt = (tmp_path / f"{source.stem}.json").read_bytes()
        assert json.loads(rebuilt)["abi"] == json.loads(committed)["abi"], REBUILD_HINT
        assert json.loads(rebuilt)["bytecode"] == json.loads(committed)["bytecode"], REBUILD_HINT
        assert rebuilt == committed, REBUILD_HINT
