"""`fabstir-node serve` runs the model update poll beside the API, as `fabstir-node run` does, so
a node serving only the API still switches to a new model version without waiting for a job."""

from __future__ import annotations

import pytest

from fabstir.commands.api import serve_services
from fabstir.models import UpdatePoller
from fabstir.settings import load_settings
from tests.e2e.conftest import Node

pytestmark = pytest.mark.e2e


def test_serve_runs_the_update_poll_unless_it_is_turned_off(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FABSTIR_API__PORT", "0")
    services = serve_services(load_settings())
    assert set(services) == {"api", "model-updates"}
    assert isinstance(services["model-updates"], UpdatePoller)

    monkeypatch.setenv("FABSTIR_MODELS__UPDATE_POLL_S", "0")
    assert set(serve_services(load_settings())) == {"api"}
