"""Spread view refreshes over event-loop turns: one heavy view per tick.

During a scan several views want repainting at once (a thumbnail, the focus curve, the surface,
the live frame). Qt paints every dirty widget in one pass, so doing them together makes one
long stall. `RoundRobin` keeps a set of dirty views and, on each tick of a short timer,
refreshes only the next one in turn (each at most once per its own minimum interval), so any
single turn of the event loop repaints at most one heavy view.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from PySide6 import QtCore


@dataclass
class _View:
    name: str
    refresh: Callable[[], None]
    min_interval_s: float
    dirty: bool = False
    last: float = 0.0


class RoundRobin(QtCore.QObject):
    def __init__(self, interval_ms: int = 40, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._views: list[_View] = []
        self._next = 0
        self._idle_callbacks: list[Callable[[], None]] = []
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def add(self, name: str, refresh: Callable[[], None], min_interval_ms: int = 0) -> None:
        self._views.append(_View(name, refresh, min_interval_ms / 1000.0))

    def mark(self, name: str) -> None:
        for v in self._views:
            if v.name == name:
                v.dirty = True
                break
        else:
            raise KeyError(f"no view called {name!r}")
        if not self._timer.isActive():
            self._timer.start()

    def is_dirty(self, name: str | None = None) -> bool:
        return any(v.dirty and (name is None or v.name == name) for v in self._views)

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Run `callback` once every dirty view has been refreshed."""
        self._idle_callbacks.append(callback)
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Refresh every dirty view now (tests, shutdown)."""
        for v in self._views:
            if v.dirty:
                self._run(v)
        self._drain_idle()

    def _run(self, v: _View) -> None:
        v.dirty = False
        v.last = time.perf_counter()
        v.refresh()

    def _tick(self) -> None:
        now = time.perf_counter()
        n = len(self._views)
        for k in range(n):
            v = self._views[(self._next + k) % n]
            if v.dirty and now - v.last >= v.min_interval_s:
                self._next = (self._next + k + 1) % n
                self._run(v)
                return
        if not self.is_dirty():
            self._drain_idle()
            if not self._idle_callbacks:
                self._timer.stop()

    def _drain_idle(self) -> None:
        callbacks, self._idle_callbacks = self._idle_callbacks, []
        for cb in callbacks:
            cb()
