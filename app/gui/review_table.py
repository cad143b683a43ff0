"""Review's table of tiles: one row per planned tile (its newest version), sortable, where its
image came from (captured, made by the focus method, or still to be made: in amber), flagged
rows in red, "flagged only", and the selection that Rescan takes."""

from __future__ import annotations

import math

import numpy as np
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui._pg import pg
from slidescan.app.gui.review_records import image_text, is_pending, note

COLUMNS = (
    "tile",
    "row",
    "col",
    "x (µm)",
    "y (µm)",
    "z (µm)",
    "error (µm)",
    "conf",
    "frames",
    "image",
    "flags",
)

_INDEX = QtCore.Qt.ItemDataRole.UserRole
_FLAGGED = (220, 60, 40)
#: A tile whose image is still to be made (the tile map's amber).
_PENDING = (230, 150, 20)


class _NumItem(QtWidgets.QTableWidgetItem):
    """A table cell that sorts by number (NaN last)."""

    def __init__(self, value: float, text: str) -> None:
        super().__init__(text)
        v = float(value)
        self.value = math.inf if math.isnan(v) else v

    def __lt__(self, other: QtWidgets.QTableWidgetItem) -> bool:
        if isinstance(other, _NumItem):
            return self.value < other.value
        return self.text() < other.text()


def _cells(idx: int, rec: np.void, flags: list[str]) -> list[QtWidgets.QTableWidgetItem]:
    z = float(rec["z_um"])
    truth = float(rec["true_focus_um"])
    err = z - truth if np.isfinite(truth) else float("nan")
    conf = float(rec["confidence"])
    x, y = float(rec["x_um"]), float(rec["y_um"])
    return [
        _NumItem(idx, str(idx)),
        _NumItem(int(rec["row"]), str(int(rec["row"]))),
        _NumItem(int(rec["col"]), str(int(rec["col"]))),
        _NumItem(x, f"{x:.1f}"),
        _NumItem(y, f"{y:.1f}"),
        _NumItem(z, f"{z:.2f}"),
        _NumItem(abs(err), f"{err:+.2f}" if np.isfinite(err) else ""),
        _NumItem(conf, f"{conf:.2f}" if np.isfinite(conf) else ""),
        _NumItem(int(rec["frames"]), str(int(rec["frames"]))),
        QtWidgets.QTableWidgetItem(image_text(rec)),
        _text_item("; ".join(flags) or note(rec)),
    ]


def _text_item(text: str) -> QtWidgets.QTableWidgetItem:
    item = QtWidgets.QTableWidgetItem(text)
    item.setToolTip(text)
    return item


class TileTable(QtWidgets.QWidget):
    #: One tile was picked in the table (its planned index).
    tilePicked = QtCore.Signal(int)
    rescanRequested = QtCore.Signal()

    def __init__(self, can_rescan: bool, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._flags: dict[int, list[str]] = {}
        self._sort_set = False
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(False)  # one line a tile; the flags elided, whole in the tip
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.flagged_only = QtWidgets.QCheckBox("flagged only")
        self.flagged_only.toggled.connect(self._apply_filter)
        select_flagged = QtWidgets.QPushButton("Select flagged")
        select_flagged.clicked.connect(self.select_flagged)
        self.rescan_button = QtWidgets.QPushButton("Rescan selected")
        self.rescan_button.setToolTip(
            "Take the selected tiles again; new versions go into this file"
        )
        self.rescan_button.clicked.connect(self.rescanRequested)
        self.rescan_button.setEnabled(can_rescan)
        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(self.flagged_only)
        bar.addWidget(select_flagged)
        bar.addStretch(1)
        bar.addWidget(self.rescan_button)
        v = QtWidgets.QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        v.addLayout(bar)
        v.addWidget(self.table, 1)

    def fill(self, records: dict[int, np.void], flags: dict[int, list[str]]) -> None:
        """One row per planned tile: `records[index]` with its `flags`."""
        self._flags = flags
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(records))
        image_col = COLUMNS.index("image")
        for i, idx in enumerate(sorted(records)):
            for c, item in enumerate(_cells(idx, records[idx], flags[idx])):
                item.setData(_INDEX, idx)
                if flags[idx]:
                    item.setForeground(pg.mkColor(*_FLAGGED))
                elif c == image_col and is_pending(records[idx]):
                    item.setForeground(pg.mkColor(*_PENDING))
                self.table.setItem(i, c, item)
        if not self._sort_set:  # tile order first; later the person's choice is kept
            self._sort_set = True
            self.table.horizontalHeader().setSortIndicator(0, QtCore.Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self._apply_filter()

    def flagged(self) -> list[int]:
        return sorted(i for i, f in self._flags.items() if f)

    def selected_indices(self) -> list[int]:
        rows = {ix.row() for ix in self.table.selectionModel().selectedRows()}
        return sorted(self.table.item(r, 0).data(_INDEX) for r in rows)

    def select_indices(self, indices: list[int]) -> None:
        """Select these tiles' rows (quietly: no `tilePicked`)."""
        wanted = set(indices)
        sel = self.table.selectionModel()
        flags = (
            QtCore.QItemSelectionModel.SelectionFlag.Select
            | QtCore.QItemSelectionModel.SelectionFlag.Rows
        )
        first = None
        with QtCore.QSignalBlocker(self.table):
            self.table.clearSelection()
            for i in range(self.table.rowCount()):
                if self.table.item(i, 0).data(_INDEX) in wanted:
                    index = self.table.model().index(i, 0)
                    sel.select(index, flags)
                    first = index if first is None else first
        if first is not None:  # a tile chosen on the map or the slide: its row in view
            self.table.scrollTo(first, QtWidgets.QAbstractItemView.ScrollHint.EnsureVisible)

    def select_flagged(self) -> None:
        self.select_indices(self.flagged())

    def _selection_changed(self) -> None:
        picked = self.selected_indices()
        if len(picked) == 1:
            self.tilePicked.emit(picked[0])

    def _apply_filter(self, *_: object) -> None:
        only = self.flagged_only.isChecked()
        for i in range(self.table.rowCount()):
            idx = self.table.item(i, 0).data(_INDEX)
            self.table.setRowHidden(i, only and not self._flags.get(idx))
