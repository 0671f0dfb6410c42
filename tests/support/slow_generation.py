"""Fault injection: hold an answer's generation after some pieces until the renter cancels.

The tiny test model writes a 400-token answer in milliseconds, faster than a client's disconnect
or cancel frame reaches the server, so a test of "leaving mid-stream stops generation" would
race. Holding the generator, as a slow GPU would, makes the cancellation land mid-answer every
time; it does not change what the server does once the renter has left.
"""

from __future__ import annotations

import time

import pytest

from fabstir.api.streams import JobStream
from fabstir.models import TokenPiece

HOLD_LIMIT_S = 30.0


def hold_generation_until_cancelled(monkeypatch: pytest.MonkeyPatch, after_pieces: int) -> None:
    """Make every job stream stop accepting pieces after ``after_pieces`` until it is cancelled."""
    publish = JobStream.publish
    published: dict[int, int] = {}

    def held_publish(stream: JobStream, piece: TokenPiece) -> bool:
        count = published.get(id(stream), 0)
        published[id(stream)] = count + 1
        if count >= after_pieces:
            deadline = time.monotonic() + HOLD_LIMIT_S
            while not stream.cancelled and time.monotonic() < deadline:
                time.sleep(0.005)
        return publish(stream, piece)

    monkeypatch.setattr(JobStream, "publish", held_publish)
