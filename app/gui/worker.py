"""One worker thread for the GUI's hardware calls (jog, go-to, home, snap, wizard tests).

Hardware calls can take seconds (a long move, a serial timeout). The GUI submits them here and
gets the result or the exception back on the GUI thread through a queued signal. One thread, so
calls reach a device in the order they were made and never overlap each other.

On Linux the worker thread runs at a lower CPU priority (`BACKGROUND_NICE`), and so does every
thread started from it, which inherits it: a scan (its runner and writer threads are started
here) and a camera's live stream. When the machine is busy the GUI thread then gets a core
first: measured during full-size simulated scans with another process keeping one of two cores
busy, the window's longest freezes (110-210 ms) were the GUI thread waiting in the run queue
behind the scan's own threads (/proc/thread-self/schedstat), not its own work. The price: on a
machine short of CPU a CPU-bound scan (the simulator renders every frame) runs slower; on real
hardware the scan thread mostly waits for the devices and loses next to nothing.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6 import QtCore

log = logging.getLogger(__name__)

#: How much lower (nice) the worker and the threads it starts run than the GUI thread.
BACKGROUND_NICE = 5

ResultCallback = Callable[[Any], None]
ErrorCallback = Callable[[BaseException], None]


class DeviceWorker(QtCore.QObject):
    """Runs callables on a single background thread; callbacks run on the GUI thread."""

    #: callback, receiver, value, label, failed: the callback runs with the value unless its
    #: receiver is gone (then a failure is still reported through `failed`).
    _finished = QtCore.Signal(object, object, object, str, bool)
    #: Emitted on the GUI thread with (label, exception) for every failed call without an
    #: on_error, or whose on_error's receiver was deleted while it ran.
    failed = QtCore.Signal(str, object)
    busyChanged = QtCore.Signal(bool)

    def __init__(
        self,
        name: str = "slidescan-device",
        parent: QtCore.QObject | None = None,
        nice: int = BACKGROUND_NICE,
    ) -> None:
        super().__init__(parent)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=_lower_priority, initargs=(nice,)
        )
        self._pending = 0
        self._closed = False
        self._finished.connect(self._deliver)

    @property
    def pending(self) -> int:
        return self._pending

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_result: ResultCallback | None = None,
        on_error: ErrorCallback | None = None,
        label: str = "",
        receiver: QtCore.QObject | None = None,
    ) -> concurrent.futures.Future | None:
        """Run `fn(*args)` on the worker thread; None (and a log line) after `shutdown()`.

        `receiver` is the Qt object the callbacks belong to: when it has been deleted by the
        time the call returns (a panel closed during a stage poll), the result is dropped
        rather than delivered to a dead object (a failure still reaches `failed`). It defaults
        to the object the bound-method callbacks belong to; a lambda's caller names it.
        """
        if self._closed:
            log.warning("%s dropped: the device worker has shut down", label or "call")
            return None
        if receiver is None:
            owners = {id(o): o for o in (_qt_owner(on_result), _qt_owner(on_error)) if o}
            receiver = next(iter(owners.values())) if len(owners) == 1 else None
        self._pending += 1
        if self._pending == 1:
            self.busyChanged.emit(True)

        def job() -> Any:
            try:
                result = fn(*args)
            except BaseException as exc:  # delivered to the GUI thread, never lost
                log.warning("%s failed: %s", label or getattr(fn, "__name__", "call"), exc)
                self._finished.emit(on_error, receiver, exc, label, True)
                return None
            self._finished.emit(on_result, receiver, result, label, False)
            return result

        return self._pool.submit(job)

    def _deliver(self, callback: Any, receiver: Any, value: Any, label: str, failed: bool) -> None:
        self._pending = max(self._pending - 1, 0)
        if self._pending == 0:
            self.busyChanged.emit(False)
        if receiver is not None and not shiboken6.isValid(receiver):
            log.debug("%s: its receiver was deleted while the call ran", label or "call")
            callback = None
        if callback is not None:
            callback(value)
        elif failed:  # nobody to tell: the worker reports it, whoever asked
            self.failed.emit(label, value)

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until every submitted call has run (tests). True when idle. Their results
        still arrive through the event loop (`drain` delivers them at once)."""
        if self._closed:
            return True
        done = self._pool.submit(lambda: None)
        try:
            done.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def drain(self) -> None:
        """Close for good (a window closing): refuse new calls, run every call already
        submitted (the microscope's close among them), then deliver their results here and
        now, so that a profile which finished opening meanwhile is seen and closed rather than
        left open, while whatever those callbacks submit is refused. Call on the GUI thread."""
        self._closed = True
        self._pool.shutdown(wait=True)
        QtCore.QCoreApplication.sendPostedEvents(self, QtCore.QEvent.Type.MetaCall)
        self._idle()

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new calls and drop the ones not yet started (results already queued still
        arrive through the event loop)."""
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self._idle()

    def _idle(self) -> None:
        if self._pending:
            self._pending = 0
            self.busyChanged.emit(False)


def _lower_priority(nice: int) -> None:
    """Lower this thread's CPU priority by `nice` (Linux: per thread, inherited by the threads
    it starts; elsewhere it would lower the whole process, so nothing is done)."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError as exc:  # not allowed here: the scan still runs, at normal priority
        log.debug("could not lower the worker's priority: %s", exc)


def _qt_owner(callback: Callable[[Any], None] | None) -> QtCore.QObject | None:
    """The Qt object a bound-method callback belongs to, else None."""
    owner = getattr(callback, "__self__", None)
    return owner if isinstance(owner, QtCore.QObject) else None
