"""Coalescing throttle for plot updates: many requests, at most one call per interval.

A scan can emit dozens of events per second; replotting a surface or re-layouting a map for each
would waste the GUI thread. `Throttle.request()` marks the view dirty; the callback runs on the
leading edge and then at most once per `interval_ms` while requests keep coming (like superqt's
`qthrottled`).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6 import QtCore


class Throttle(QtCore.QObject):
    def __init__(
        self,
        callback: Callable[[], None],
        interval_ms: int = 200,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._callback = callback
        self._pending = False
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._on_timeout)

    def request(self) -> None:
        if self._timer.isActive():
            self._pending = True
            return
        self._callback()
        self._timer.start()

    def flush(self) -> None:
        """Run a pending call now (end of a scan, tests)."""
        if self._pending:
            self._pending = False
            self._callback()

    def _on_timeout(self) -> None:
        if self._pending:
            self._pending = False
            self._callback()
            self._timer.start()
