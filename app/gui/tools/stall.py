"""Event-loop stall monitor: how late does a periodic timer fire?

A `QTimer` ticking every `period_ms` on the GUI thread records the largest gap between ticks
beyond the period (`max_stall_ms`, wall clock). Anything that keeps the event loop from
running shows up as a stall: a slow slot, a hardware call, a big repaint, and also waiting for
the GIL while the scan or writer thread holds it, or for a CPU core. That is what a person
sees, so `max_stall_ms` is what the requirement bounds: `FROZEN_MS`.

`max_busy_ms` is the GUI thread's own CPU time (`time.thread_time`) in its busiest turn of the
event loop: the GUI's own share of a stall, blind to waiting. Both are reported; the difference
says whether a stall was the GUI's work or a wait.
"""

from __future__ import annotations

import time

from PySide6 import QtCore

#: A window that does not answer for this long looks frozen to a person (the usual ~100 ms
#: limit for a response to feel immediate): the largest event-loop stall the GUI may have.
FROZEN_MS = 100.0


class StallMonitor(QtCore.QObject):
    def __init__(self, period_ms: int = 5, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.period_ms = period_ms
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.setInterval(period_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self._last_cpu = 0.0
        self.max_stall_ms = 0.0
        self.max_busy_ms = 0.0
        self.ticks = 0
        self.stalls_over_50ms = 0

    def start(self) -> None:
        self._last = None
        self.max_stall_ms = 0.0
        self.max_busy_ms = 0.0
        self.ticks = 0
        self.stalls_over_50ms = 0
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def resume(self) -> None:
        """Continue after `stop()` keeping the figures so far (skip a known pause)."""
        self._last = None
        self._timer.start()

    def summary(self) -> dict[str, float]:
        return {
            "max_stall_ms": self.max_stall_ms,
            "max_busy_ms": self.max_busy_ms,
            "stalls_over_50ms": self.stalls_over_50ms,
            "ticks": self.ticks,
        }

    def _tick(self) -> None:
        now = time.perf_counter()
        cpu = time.thread_time()
        if self._last is not None:
            stall = (now - self._last) * 1000.0 - self.period_ms
            self.max_stall_ms = max(self.max_stall_ms, stall)
            self.max_busy_ms = max(self.max_busy_ms, (cpu - self._last_cpu) * 1000.0)
            if stall > 50.0:
                self.stalls_over_50ms += 1
        self._last = now
        self._last_cpu = cpu
        self.ticks += 1
