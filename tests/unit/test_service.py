"""The node's services run together and a dying one stops the node with a failure."""

from __future__ import annotations

import threading

from fabstir.service import ServiceGroup


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
