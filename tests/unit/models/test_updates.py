from __future__ import annotations

import threading

import pytest

from fabstir.errors import ConfigError
from fabstir.models import UpdatePoller
from fabstir.settings import load_settings


class CheckCounter:
    """Stands in for the ModelManager to count the poller's checks; the checks themselves are
    tested in test_manager.py and, on anvil, in tests/integration/models/test_update_poll.py."""

    def __init__(self) -> None:
        self.checks = 0
        self.checked = threading.Event()

    def check_for_updates(self) -> None:
        self.checks += 1
        self.checked.set()


def test_the_poller_checks_at_its_interval_until_stopped() -> None:
    counter = CheckCounter()
    poller = UpdatePoller(counter, interval_s=0.01)  # type: ignore[arg-type]
    poller.start()
    thread = threading.Thread(target=poller.run)
    thread.start()
    assert counter.checked.wait(timeout=30)
    poller.stop()
    thread.join(timeout=30)
    assert not thread.is_alive() and counter.checks >= 1


@pytest.mark.parametrize("interval_s", [0.0, -1.0, float("nan"), float("inf")])
def test_a_wrong_poll_interval_is_refused(interval_s: float) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        UpdatePoller(CheckCounter(), interval_s)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "inf"])
def test_a_wrong_poll_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FABSTIR_MODELS__UPDATE_POLL_S", value)
    with pytest.raises(ConfigError, match="FABSTIR_MODELS__UPDATE_POLL_S"):
        load_settings()


def test_the_poll_is_on_by_default_and_0_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().models.update_poll_s > 0
    monkeypatch.setenv("FABSTIR_MODELS__UPDATE_POLL_S", "0")
    assert load_settings().models.update_poll_s == 0
