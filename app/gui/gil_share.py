"""The GUI thread's share of the GIL while the main window is open.

Qt paints without the GIL and takes it back for every Python callback of a repaint (each
pyqtgraph item's `paint`, `boundingRect`, a slot). When another thread is running Python (the
scan thread focusing a tile, a camera's stream thread), each of those takes waits until the
interpreter's switch interval expires and the other thread is made to let go: 5 ms by default.
One repaint of the focus curve makes dozens of them, so on a busy machine a 7 ms repaint took
25-60 ms of wall clock and the window stalled for over 100 ms during a scan. A 1 ms interval
bounds each wait at 1 ms; the other threads lose little (a switch costs microseconds).

The switch interval is the process's; `favour_gui_thread` sets it while at least one window
wants it, `release` puts the previous value back when the last one closes.
"""

from __future__ import annotations

import sys

GUI_SWITCH_INTERVAL_S = 0.001

_holders = 0
_previous = sys.getswitchinterval()


def favour_gui_thread() -> None:
    global _holders, _previous
    if _holders == 0:
        _previous = sys.getswitchinterval()
        sys.setswitchinterval(min(_previous, GUI_SWITCH_INTERVAL_S))
    _holders += 1


def release() -> None:
    global _holders
    if _holders == 0:
        return
    _holders -= 1
    if _holders == 0:
        sys.setswitchinterval(_previous)
