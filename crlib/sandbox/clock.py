"""Simulated time. Device behaviour (sync schedules, activity) runs on it so that tests can
speed it up; long-running-operation latency stays on real time, which benchmarks measure."""

from __future__ import annotations

import datetime as dt
import time


class Clock:
    def __init__(self, speed: float = 1.0):
        self._speed = speed
        self._real0 = time.time()
        self._sim0 = self._real0

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        # Re-anchor so that simulated time never jumps backwards.
        self._sim0 = self.time()
        self._real0 = time.time()
        self._speed = value

    def time(self) -> float:
        return self._sim0 + (time.time() - self._real0) * self._speed

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)


def iso(ts: dt.datetime | float) -> str:
    """Azure's UTC timestamp format, e.g. 2025-01-01T00:00:00.1234567Z."""
    if isinstance(ts, float | int):
        ts = dt.datetime.fromtimestamp(ts, dt.UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
