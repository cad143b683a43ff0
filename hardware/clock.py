"""Clocks. Simulated devices share a `VirtualClock`: every move and exposure advances it, so a
scan's hardware time is deterministic and separate from the compute time it costs us. Real
devices use `RealClock`."""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Seconds on this clock (arbitrary origin, monotonic)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let `seconds` of hardware time pass."""
        ...


class RealClock:
    """Wall-clock time for real hardware."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock:
    """Simulated hardware time. `sleep` advances it instantly; thread-safe."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot advance a clock by a negative time ({seconds} s)")
        with self._lock:
            self._t += seconds

    advance = sleep
