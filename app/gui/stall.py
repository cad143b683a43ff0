"""Event-loop stall monitor: how late does a periodic timer fire?

A `QTimer` ticking every `period_ms` on the GUI thread records the largest gap between ticks
beyond the period. Anything that blocks the GUI thread (a slow slot, a hardware call, a big
repaint) shows up as a stall. Used by the tests and the scan benchmark to prove the window stays
responsive while a scan runs.
"""

from __future__ import annotations

import time

from PySide6 import QtCore


class StallMonitor(QtCore.QObject):
    def __init__(self, period_ms: int = 5, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.period_ms = period_ms
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.setInterval(period_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self.max_stall_ms = 0.0
        self.ticks = 0
        self.stalls_over_50ms = 0

    def start(self) -> None:
        self._last = None
        self.max_stall_ms = 0.0
        self.ticks = 0
        self.stalls_over_50ms = 0
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            stall = (now - self._last) * 1000.0 - self.period_ms
            self.max_stall_ms = max(self.max_stall_ms, stall)
            if stall > 50.0:
                self.stalls_over_50ms += 1
        self._last = now
        self.ticks += 1
