"""The review windows the main window has opened, one per scan file.

A file a scan of this process is about to write must not be held open for reading: HDF5
refuses a writer while the same process holds a reader, and with HDF5 2.0 two readers of one
file in one process that refresh read wrong chunks (the runner opens one at the end of a scan).
So a review window lets go of its file (`release`) when a scan claims it and reloads when that
scan has finished (`ReviewWindow.scan_finished`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from slidescan.app.events import Finished
from slidescan.app.gui.notifier import Notifier
from slidescan.app.gui.review import ReviewWindow


def _same(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


class ReviewWindows(QtCore.QObject):
    def __init__(
        self,
        settings: QtCore.QSettings,
        notifier: Notifier,
        rescan: Callable[[str, list[int]], None],
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._settings = settings
        self._notifier = notifier
        self._rescan = rescan
        self.windows: list[ReviewWindow] = []
        #: The file a scan of this window is writing, if any.
        self.writing = ""

    def open(self, path: str) -> ReviewWindow | None:
        """A review window for scan file `path` (the existing one if it is open already)."""
        for win in self.windows:
            if _same(win.path, path):
                win.raise_()
                win.activateWindow()
                return win
        try:
            win = ReviewWindow(path, rescan=self._rescan, settings=self._settings)
        except Exception as exc:  # not a scan file, unreadable: said, no window
            self._notifier.error("Review", f"Cannot open {path}:\n{exc}")
            return None
        win.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        win.destroyed.connect(lambda *_: self._forget(win))
        self.windows.append(win)
        if self.writing and _same(self.writing, path):
            win.release_file()  # a scan here is writing it: reload when the scan ends
        win.show()
        return win

    def claim(self, path: str) -> None:
        """A scan is about to write `path`: its review window lets go of the file."""
        self.writing = path
        for win in self.windows:
            if _same(win.path, path):
                win.release_file()

    def scan_ended(self) -> None:
        self.writing = ""

    def release_path(self, path: str) -> None:
        """Something of this process (stitching) is about to write `path`: its review window
        lets go of the file."""
        for win in self.windows:
            if _same(win.path, path):
                win.release_file("stitching this file: it reloads when done")

    def reopen_path(self, path: str) -> None:
        """`path` has been written (stitched): its review window reads it again."""
        for win in self.windows:
            if _same(win.path, path) and not (self.writing and _same(self.writing, path)):
                win.reload()

    def generation_of(self, path: str) -> int | None:
        """The stitching generation of `path` as an open review window reads it (None: no
        window has it open; a second reader of it here would break the window's reads)."""
        for win in self.windows:
            if _same(win.path, path):
                return win.stitch_generation()
        return None

    def active_path(self) -> str:
        """The file of the review window used last (the active one first), or ""."""
        for win in self.windows:
            if win.isActiveWindow():
                return win.path
        return self.windows[-1].path if self.windows else ""

    def scan_finished(self, ev: Finished) -> None:
        """A scan has finished: the review window of its file reloads it."""
        for win in list(self.windows):
            win.scan_finished(ev)

    def close_all(self) -> None:
        for win in list(self.windows):
            win.close()

    def _forget(self, win: QtWidgets.QWidget) -> None:
        if win in self.windows:
            self.windows.remove(win)
