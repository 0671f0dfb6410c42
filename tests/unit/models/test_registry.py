from __future__ import annotations

import pytest

from fabstir.chain import model_id_of
from fabstir.errors import JobRejected
from fabstir.models import SettingsModelRegistry
from fabstir.settings import ModelSpec

SHA = "ab" * 32


def test_a_settings_model_resolves_by_its_on_chain_id() -> None:
    registry = SettingsModelRegistry([ModelSpec(id="m1", uri="file:///m1.gguf", sha256=SHA)])
    record = registry.model(model_id_of("m1").upper().replace("0X", "0x"))
    assert (record.name, record.sha256, record.uri, record.active) == (
        "m1",
        SHA,
        "file:///m1.gguf",
        True,
    )
    assert record.id == model_id_of("m1") and record.base_id is None


def test_an_unknown_model_is_refused_with_a_stable_code() -> None:
    with pytest.raises(JobRejected) as refused:
        SettingsModelRegistry([]).model(model_id_of("nope"))
    assert refused.value.code == "unknown_model"


def test_an_adapter_names_its_base_model() -> None:
    base = ModelSpec(id="base", uri="/b.gguf", sha256=SHA)
    lora = ModelSpec(id="tuned", uri="/l.gguf", sha256="cd" * 32, base="base")
    assert SettingsModelRegistry([base, lora]).model(model_id_of("tuned")).base_id == model_id_of(
        "base"
    )


def test_an_adapter_of_an_unknown_base_is_a_configuration_mistake() -> None:
    lora = ModelSpec(id="tuned", uri="/l.gguf", sha256="cd" * 32, base="missing")
    with pytest.raises(ValueError, match="unknown base"):
        SettingsModelRegistry([lora])
