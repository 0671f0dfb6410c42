"""The node's services run together and a dying one stops the node with a failure."""

from __future__ import annotations

import gc
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from fabstir.errors import ConfigError
from fabstir.service import ProcessService, ServiceGroup


class _Loop:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.stopped = threading.Event()
        self.started = False

    def start(self) -> None:
        self.started = True

    def run(self) -> None:
        if self.fail:
            raise RuntimeError("the loop died")
        self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


def test_a_dying_service_stops_the_others_and_fails_the_group() -> None:
    healthy, dying = _Loop(), _Loop(fail=True)

    assert ServiceGroup({"healthy": healthy, "dying": dying}).run() == 1
    assert healthy.stopped.is_set()


def test_a_requested_stop_ends_every_service_cleanly() -> None:
    loops = {"a": _Loop(), "b": _Loop()}
    group = ServiceGroup(loops)
    threading.Timer(0.2, group.request_stop).start()

    assert group.run() == 0
    assert all(loop.started and loop.stopped.is_set() for loop in loops.values())


def test_the_group_keeps_what_start_up_made_out_of_the_collectors_sight() -> None:
    gc.unfreeze()
    group = ServiceGroup({"a": _Loop()})
    threading.Timer(0.2, group.request_stop).start()
    try:
        assert group.run() == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_process_service_refuses_an_address_another_process_already_answers(
    tmp_path: Path,
) -> None:
    # Its readiness check would pass on the other process's answer, and the node would use a
    # server (with another database) that is not its own.
    squatter = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{squatter.server_port}/"
    service = ProcessService(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        log_path=tmp_path / "service.log",
        ready_url=url,
    )
    try:
        with pytest.raises(ConfigError) as refused:
            service.start()
    finally:
        squatter.shutdown()
    assert refused.value.code == "port_in_use"
    assert not (tmp_path / "service.log").exists()  # nothing was started


def test_a_process_service_runs_its_process_at_the_niceness_it_is_given(tmp_path: Path) -> None:
    # The node's Prefect server runs this way: its bookkeeping yields the cores to generation.
    service = ProcessService(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        log_path=tmp_path / "service.log",
        niceness=7,
    )
    service.start()
    try:
        assert service._process is not None
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, service._process.pid) == min(19, ours + 7)
    finally:
        service.stop()


@pytest.mark.parametrize("niceness", [-1, 20])
def test_a_niceness_outside_0_to_19_is_refused(tmp_path: Path, niceness: int) -> None:
    with pytest.raises(ConfigError) as refused:
        ProcessService(["true"], log_path=tmp_path / "service.log", niceness=niceness)
    assert refused.value.code == "invalid_niceness"
