"""The scan panel's tissue row: find the tissue, the margin around it, and the tools that edit
the regions (add a rectangle or a polygon, remove the selected one), with a one-line summary.
A view only: `tissue_scan.TissueScan` does the work."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets


class TissueControls(QtWidgets.QWidget):
    findRequested = QtCore.Signal()
    marginChanged = QtCore.Signal(float)
    #: "rect", "polygon" (a drawing tool checked) or "select" (unchecked).
    toolRequested = QtCore.Signal(str)
    removeRequested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.find_button = QtWidgets.QPushButton("Find tissue")
        self.find_button.setToolTip(
            "Take the slide's overview (on hardware: a fast pre-scan of the profile's slide "
            "area) and find the tissue on it; the scan then covers the regions found"
        )
        self.find_button.clicked.connect(self.findRequested)
        self.margin = QtWidgets.QDoubleSpinBox()
        self.margin.setRange(0, 5000)
        self.margin.setDecimals(0)
        self.margin.setSingleStep(50)
        self.margin.setValue(100)
        self.margin.setSuffix(" µm")
        self.margin.setKeyboardTracking(False)
        self.margin.setToolTip("Glass kept around each piece of tissue found")
        self.margin.valueChanged.connect(self.marginChanged)
        self.rect_button = self._tool_button("Add ▭", "rect", "Draw a rectangle to scan as well")
        self.polygon_button = self._tool_button(
            "Add ⬠",
            "polygon",
            "Draw a polygon to scan as well: click the corners, double-click (or Enter) to close",
        )
        self.remove_button = QtWidgets.QPushButton("Remove")
        self.remove_button.setToolTip("Leave the selected region out (click a region to select)")
        self.remove_button.setEnabled(False)
        self.remove_button.clicked.connect(self.removeRequested)
        self.summary = QtWidgets.QLabel("no overview yet")
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("color: gray; font-size: 8pt")

        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.find_button)
        top.addWidget(QtWidgets.QLabel("margin"))
        top.addWidget(self.margin)
        tools = QtWidgets.QHBoxLayout()
        tools.addWidget(self.rect_button)
        tools.addWidget(self.polygon_button)
        tools.addWidget(self.remove_button)
        v = QtWidgets.QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        v.addLayout(top)
        v.addLayout(tools)
        v.addWidget(self.summary)
        self.set_editable(False)

    def _tool_button(self, text: str, tool: str, tip: str) -> QtWidgets.QPushButton:
        b = QtWidgets.QPushButton(text)
        b.setCheckable(True)
        b.setToolTip(tip)
        b.toggled.connect(lambda on, t=tool: self._tool_toggled(t, on))
        return b

    def _tool_toggled(self, tool: str, on: bool) -> None:
        if on:
            other = self.polygon_button if tool == "rect" else self.rect_button
            with QtCore.QSignalBlocker(other):
                other.setChecked(False)
            self.toolRequested.emit(tool)
        elif not (self.rect_button.isChecked() or self.polygon_button.isChecked()):
            self.toolRequested.emit("select")

    def show_tool(self, tool: str) -> None:
        """Reflect the tool in use (the map returns to "select" after a drawing)."""
        for button, name in ((self.rect_button, "rect"), (self.polygon_button, "polygon")):
            with QtCore.QSignalBlocker(button):
                button.setChecked(tool == name)

    def set_editable(self, on: bool) -> None:
        """Editing tools work once there is an overview."""
        for w in (self.rect_button, self.polygon_button):
            w.setEnabled(on)
        if not on:
            self.remove_button.setEnabled(False)

    def set_busy(self, busy: bool) -> None:
        self.find_button.setEnabled(not busy)
        self.find_button.setText("Finding tissue …" if busy else "Find tissue")
