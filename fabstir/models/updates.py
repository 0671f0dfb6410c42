"""Notice model updates on an idle node: a service that checks the registry at an interval."""

from __future__ import annotations

import math
import threading

from fabstir.models.manager import ModelManager


class UpdatePoller:
    """Every ``interval_s``, check the registry for new versions of the served models.

    A new version downloads, verifies and becomes the one new jobs get in the background (see
    ``ModelManager.check_for_updates``), so the first job after an update does not wait for it.
    """

    def __init__(self, manager: ModelManager, interval_s: float) -> None:
        if not 0 < interval_s < math.inf:  # also refuses NaN
            raise ValueError(f"need 0 < interval_s < inf, got {interval_s}")
        self._manager = manager
        self._interval_s = interval_s
        self._stopped = threading.Event()

    def start(self) -> None:
        """Nothing to prepare: the first check is one interval after ``run`` starts."""

    def run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self._manager.check_for_updates()

    def stop(self) -> None:
        self._stopped.set()
