"""Scan events from the runner thread onto the GUI thread.

`EventRelay` is a `ScanObserver`: the runner calls `on_event` from its own thread, which emits one
Qt signal carrying the event object. The relay lives on the GUI thread, so Qt's automatic
connection type queues the call and the slots run on the GUI thread, in emission order.
"""

from __future__ import annotations

from PySide6 import QtCore

from slidescan.app.events import ScanEvent


class EventRelay(QtCore.QObject):
    """Observer that forwards every scan event through `event` (queued onto the GUI thread)."""

    event = QtCore.Signal(object)

    def on_event(self, event: ScanEvent) -> None:
        self.event.emit(event)
