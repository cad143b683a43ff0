"""The wizard's list of the cameras a camera kind finds (Basler cameras through pylon): model,
serial, interface and whether another program holds each.

The kind's `find` (the device registry's) runs on the `DeviceWorker`: pylon takes a few
hundred milliseconds to enumerate, more the first time it loads. What a person sees instead of
an empty list is one line: the install command when the kind's optional extra is missing, or
that no camera was found. A camera the profile names that is not found stays in the list,
marked so, and stays chosen.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.wizard_errors import error_line
from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.registry import CameraKind

COLUMNS = ("Model", "Serial", "Interface", "Status")
SERIAL_ROLE = QtCore.Qt.ItemDataRole.UserRole


def install_hint(kind: CameraKind) -> str:
    return f"pip install 'slidescan[{kind.extra}]'"


def availability(camera: dict[str, Any], previewed: str | None) -> str:
    """The Status column: whether the camera is free to open."""
    if camera.get("missing"):
        return "not found"
    if previewed is not None and camera["serial"] == previewed:
        return "open here (preview)"
    in_use = camera.get("in_use")
    if in_use is None:
        return "free?"  # pylon cannot tell (a GigE camera in another subnet)
    return "in use by another program" if in_use else "free"


class CameraList(QtWidgets.QWidget):
    """The cameras of one kind; `chosen(serial)` when a person picks one."""

    chosen = QtCore.Signal(str)

    def __init__(self, worker: DeviceWorker, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.currentItemChanged.connect(self._picked)
        self.refresh_button = QtWidgets.QToolButton()
        self.refresh_button.setText("⟳")
        self.refresh_button.setToolTip("Look for cameras again")
        self.refresh_button.clicked.connect(self.refresh)
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QtWidgets.QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.status, 1)
        row.addWidget(self.refresh_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tree)
        layout.addLayout(row)
        self._fit_rows()
        self._kind: CameraKind | None = None
        self._looking = 0  # which look the answer belongs to
        self.found: list[dict[str, Any]] = []
        #: The serial chosen (by a person, or the profile's), kept across looks.
        self.serial: str | None = None
        #: The serial the preview has open (its Status says so).
        self.previewed: str | None = None
        #: Seconds the last look took, from asking to the list shown.
        self.listing_s: float | None = None

    def look(self, kind: CameraKind) -> None:
        """List the cameras `kind` finds (its `find` runs on the worker)."""
        assert kind.find is not None, f"camera kind {kind.name} cannot list its cameras"
        self._kind = kind
        self._looking += 1
        looking = self._looking
        self.status.setText(f"looking for cameras ({kind.label}) …")
        self.refresh_button.setEnabled(False)
        started = time.perf_counter()
        self.worker.submit(
            kind.find,
            on_result=lambda found: self._found(looking, found, started),
            on_error=lambda exc: self._failed(looking, kind, exc),
            label=f"list {kind.label} cameras",
            receiver=self,
        )

    def cancel(self) -> None:
        """Drop the answer to a look still running (the wizard closes: its widgets go)."""
        self._looking += 1

    def refresh(self) -> None:
        if self._kind is not None:
            self.look(self._kind)

    def choose(self, serial: str | None) -> None:
        """Choose `serial` (the profile's) without emitting `chosen`."""
        self.serial = serial
        self._fill()

    def set_previewed(self, serial: str | None) -> None:
        self.previewed = serial
        self._fill()

    def _found(self, looking: int, found: list[dict[str, Any]], started: float) -> None:
        if looking != self._looking:
            return
        self.listing_s = time.perf_counter() - started
        self.refresh_button.setEnabled(True)
        self.found = list(found)
        self._fill()
        if not found:
            self.status.setText("No camera found: is it connected and powered on? ⟳ looks again.")
            return
        self._say_found()

    def _say_found(self) -> None:
        n = len(self.found)
        text = f"{n} camera{'s' if n != 1 else ''} found in {self.listing_s or 0:.2f} s"
        self.status.setText(text if self.serial else f"{text}: pick one to see it")

    def _failed(self, looking: int, kind: CameraKind, exc: BaseException) -> None:
        if looking != self._looking:
            return
        self.refresh_button.setEnabled(True)
        self.found = []
        self._fill()
        if isinstance(exc, ImportError) and kind.extra is not None:
            message = error_line(exc)
            hint = install_hint(kind)
            self.status.setText(f"✗ {message if hint in message else f'{message}: {hint}'}")
        else:
            self.status.setText(f"✗ listing failed: {error_line(exc)}")

    def _rows(self) -> list[dict[str, Any]]:
        rows = list(self.found)
        if self.serial and all(c["serial"] != self.serial for c in rows):
            rows.append({"model": "", "serial": self.serial, "interface": "", "missing": True})
        return rows

    def _fill(self) -> None:
        with QtCore.QSignalBlocker(self.tree):
            self.tree.clear()
            for camera in self._rows():
                item = QtWidgets.QTreeWidgetItem(
                    [
                        camera.get("model", ""),
                        camera["serial"],
                        camera.get("interface", ""),
                        availability(camera, self.previewed),
                    ]
                )
                item.setData(0, SERIAL_ROLE, camera["serial"])
                if camera.get("name"):
                    item.setToolTip(0, f"user-defined name: {camera['name']}")
                self.tree.addTopLevelItem(item)
                if camera["serial"] == self.serial:
                    self.tree.setCurrentItem(item)
            for column in range(len(COLUMNS)):
                self.tree.resizeColumnToContents(column)
        self._fit_rows()

    def _fit_rows(self, fewest: int = 2, most: int = 5) -> None:
        """As tall as its rows (between `fewest` and `most`), the rest left to the preview."""
        rows = min(max(self.tree.topLevelItemCount(), fewest), most)
        row_px = self.tree.sizeHintForRow(0) if self.tree.topLevelItemCount() else 0
        row_px = row_px if row_px > 0 else self.fontMetrics().height() + 4
        height = self.tree.header().sizeHint().height() + rows * row_px + 2 * self.tree.frameWidth()
        self.tree.setFixedHeight(height)

    def _picked(self, item: QtWidgets.QTreeWidgetItem | None, *_: object) -> None:
        if item is None:
            return
        self.serial = str(item.data(0, SERIAL_ROLE))
        if self.found:
            self._say_found()
        self.chosen.emit(self.serial)
