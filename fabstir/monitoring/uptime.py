"""Availability from the node's own heartbeats, kept in a local file across restarts.

The running node appends one heartbeat per sampling interval, tagged with an id for this process
(its boot). A heartbeat at ``t`` counts the node as up until the next heartbeat of the same boot
when that one comes within ``max_gap_s``; otherwise (a crash, a stop, a hang) only until
``t + interval_s``. So the time between a process's last heartbeat and the next process's first is
downtime, however short the restart.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DAY_S = 24 * 3600
UPTIME_WINDOWS_S = {"24h": DAY_S, "7d": 7 * DAY_S, "30d": 30 * DAY_S}
# Samples older than the longest window are dropped when the log is opened.
RETENTION_S = 31 * DAY_S


@dataclass(frozen=True)
class Heartbeat:
    at: float
    boot: str


@dataclass(frozen=True)
class Uptime:
    """Availability over one window: ``up_s`` of ``observed_s`` (from the window's start or the
    first heartbeat ever, whichever is later, to its end)."""

    window: str
    up_s: float
    observed_s: float

    @property
    def ratio(self) -> float | None:
        return None if self.observed_s <= 0 else self.up_s / self.observed_s


class HeartbeatLog:
    """Heartbeats as JSON lines in a local file; this process appends under its own boot id."""

    def __init__(self, path: Path, *, boot: str | None = None) -> None:
        self.path = path
        self.boot = boot or uuid.uuid4().hex[:12]

    def beat(self, at: float | None = None) -> None:
        """Append one heartbeat of this boot (now, unless ``at`` is given)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"at": time.time() if at is None else at, "boot": self.boot})
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())

    def read(self) -> list[Heartbeat]:
        """Return every heartbeat in time order; a torn last line (a crash mid-write) is skipped."""
        if not self.path.exists():
            return []
        beats = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                fields = json.loads(line)
                beats.append(Heartbeat(float(fields["at"]), str(fields["boot"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("skipping a malformed heartbeat line", extra={"line": number})
        return sorted(beats, key=lambda beat: beat.at)

    def prune(self, now: float) -> None:
        """Drop heartbeats older than the retention period (rewritten atomically)."""
        kept = [beat for beat in self.read() if beat.at >= now - RETENTION_S]
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(
            "".join(json.dumps({"at": b.at, "boot": b.boot}) + "\n" for b in kept),
            encoding="utf-8",
        )
        temporary.replace(self.path)


def up_seconds(
    beats: Sequence[Heartbeat], start: float, end: float, *, interval_s: float, max_gap_s: float
) -> float:
    """Return the seconds of ``[start, end]`` the heartbeats show the node up."""
    if interval_s <= 0 or max_gap_s < interval_s:
        raise ValueError("need interval_s > 0 and max_gap_s >= interval_s")
    ordered = sorted(beats, key=lambda beat: beat.at)
    total = 0.0
    followers: list[Heartbeat | None] = [*ordered[1:], None]
    for beat, following in zip(ordered, followers, strict=False):
        until = beat.at + interval_s
        if following is not None:
            joined = following.boot == beat.boot and following.at - beat.at <= max_gap_s
            until = following.at if joined else min(until, following.at)
        total += max(0.0, min(until, end) - max(beat.at, start))
    return total


def uptime(
    beats: Sequence[Heartbeat], now: float, *, interval_s: float, max_gap_s: float | None = None
) -> list[Uptime]:
    """Return uptime over the last 24 h, 7 d and 30 d before ``now``.

    ``max_gap_s`` (default twice the interval) is the longest silence still counted as up.
    """
    gap = 2 * interval_s if max_gap_s is None else max_gap_s
    first = min((beat.at for beat in beats), default=now)
    windows = []
    for name, length_s in UPTIME_WINDOWS_S.items():
        start = max(now - length_s, first)
        up = up_seconds(beats, start, now, interval_s=interval_s, max_gap_s=gap)
        windows.append(Uptime(name, up, max(0.0, now - start)))
    return windows
