"""Review a scan file: the tile map with thumbnails, a table of tiles, one tile at full
resolution with its focus record and curve, the focus surface, out-of-focus flags, rescan of
selected tiles into the same file, and exports.

Any scan file opens: finished, still being written (it re-reads new tiles every couple of
seconds while its status is "running") or left by a crashed scan (the reader trusts only the
committed tiles). Rescanned tiles appear as their newest version.

A tile is flagged when its focus failed (not ok), fell back to a prediction, has a confidence
below the plan's minimum, or, where the true focus is known (simulator), lies more than half
the objective's depth of field from it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from slidescan.app.events import FinishReason, FocusDone
from slidescan.app.export.tiles import export_table, export_tile
from slidescan.app.gui import dialogs
from slidescan.app.gui._pg import pg
from slidescan.app.gui.focus_plots import FocusCurvePlot, FocusSurfacePlot
from slidescan.app.gui.main_window import focus_quality
from slidescan.app.gui.tile_map import OVERLAYS, TileGeometry, TileMap
from slidescan.app.records import MADE, PREDICTED
from slidescan.app.store import ScanReader
from slidescan.hardware.optics import OBJECTIVES

log = logging.getLogger(__name__)

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
    "flags",
)


def _text(v: Any) -> str:
    if isinstance(v, np.ndarray):
        v = v.item()
    if isinstance(v, bytes | np.bytes_):
        return bytes(v).decode("utf-8", "replace").rstrip("\x00")
    return str(v)


def _note(rec: Any) -> str:
    """What the flags column says of an unflagged tile: empty glass, a tile the focus method
    spent on its per-slide calibration (more frames, by design), an image the method made from
    raw shots (a virtual focus), or another method that settled the tile."""
    if rec["skipped"]:
        return "empty glass"
    notes = []
    if rec["calibration"]:
        notes.append("per-slide calibration")
    if _text(rec["image_source"]) == MADE:
        kind = _text(rec["made_kind"]) or "made"
        notes.append(f"virtual focus: {kind} from {int(rec['shot_count'])} shots")
    fallback = _text(rec["fallback"])
    if fallback and fallback != PREDICTED:
        notes.append(f"settled by {fallback}")
    return "; ".join(notes)


def half_depth_of_field(objective: str) -> float | None:
    o = OBJECTIVES.get(objective)
    return o.depth_of_field_um / 2 if o is not None else None


def flag_reasons(rec: np.void, min_confidence: float, half_dof: float | None) -> list[str]:
    """Why a tile record looks out of focus (empty: it looks fine)."""
    if rec["skipped"]:
        return []
    reasons = []
    if not rec["ok"]:
        reasons.append("focus failed")
    if _text(rec["fallback"]) == PREDICTED:
        reasons.append("taken at the predicted z")
    conf = float(rec["confidence"])
    if np.isfinite(conf) and conf < min_confidence:
        reasons.append(f"confidence {conf:.2f}")
    truth = float(rec["true_focus_um"])
    if half_dof is not None and np.isfinite(truth):
        err = float(rec["z_um"]) - truth
        if abs(err) > half_dof:
            reasons.append(f"|error| {abs(err):.2f} > {half_dof:.2f} µm")
    return reasons


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


class ReviewWindow(QtWidgets.QMainWindow):
    def __init__(
        self,
        path: str | Path,
        rescan: Callable[[str, list[int]], None] | None = None,
        settings: QtCore.QSettings | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.path = str(path)
        self._rescan = rescan
        self.settings = settings
        self.reader = ScanReader(self.path)
        self._closed = False
        self.setWindowTitle(f"Review: {Path(self.path).name}")
        self.setWindowIcon(dialogs.app_icon())
        self.last_dialog: QtWidgets.QMessageBox | None = None
        self.current_index: int | None = None
        self._rows: dict[int, int] = {}  # planned index -> file row of its newest version
        self._records: dict[int, np.void] = {}
        self._flags: dict[int, list[str]] = {}
        self._n_seen = -1
        self._sort_set = False

        # -- views ------------------------------------------------------------------------------
        self.tile_map = TileMap()
        self.tile_map.tileClicked.connect(self.select_tile)
        self.overlay_combo = QtWidgets.QComboBox()
        self.overlay_combo.addItems(OVERLAYS)
        self.overlay_combo.currentTextChanged.connect(self.tile_map.set_overlay)
        map_box = QtWidgets.QWidget()
        v = QtWidgets.QVBoxLayout(map_box)
        v.setContentsMargins(0, 0, 0, 0)
        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(QtWidgets.QLabel("Overlay"))
        bar.addWidget(self.overlay_combo)
        bar.addStretch(1)
        bar.addWidget(QtWidgets.QLabel("click a tile to open it"))
        v.addWidget(self.tile_map, 1)
        v.addLayout(bar)

        self.viewer = pg.ImageView()
        self.viewer.ui.roiBtn.hide()
        self.viewer.ui.menuBtn.hide()
        self.viewer.getView().invertY(True)
        self.tile_title = QtWidgets.QLabel("no tile selected")
        self.tile_title.setStyleSheet("font-weight: bold")
        viewer_box = QtWidgets.QWidget()
        v = QtWidgets.QVBoxLayout(viewer_box)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.tile_title)
        v.addWidget(self.viewer, 1)

        self.record_table = QtWidgets.QTableWidget(0, 2)
        self.record_table.setHorizontalHeaderLabels(["field", "value"])
        self.record_table.horizontalHeader().setStretchLastSection(True)
        self.record_table.verticalHeader().hide()
        self.record_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.focus_curve = FocusCurvePlot()
        self.focus_surface = FocusSurfacePlot()

        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._table_selection)
        self.flagged_only = QtWidgets.QCheckBox("flagged only")
        self.flagged_only.toggled.connect(self._apply_filter)
        select_flagged = QtWidgets.QPushButton("Select flagged")
        select_flagged.clicked.connect(self.select_flagged)
        self.rescan_button = QtWidgets.QPushButton("Rescan selected")
        self.rescan_button.setToolTip(
            "Take the selected tiles again; new versions go into this file"
        )
        self.rescan_button.clicked.connect(self.rescan_selected)
        self.rescan_button.setEnabled(rescan is not None)
        table_box = QtWidgets.QWidget()
        v = QtWidgets.QVBoxLayout(table_box)
        v.setContentsMargins(0, 0, 0, 0)
        tb = QtWidgets.QHBoxLayout()
        tb.addWidget(self.flagged_only)
        tb.addWidget(select_flagged)
        tb.addStretch(1)
        tb.addWidget(self.rescan_button)
        v.addLayout(tb)
        v.addWidget(self.table, 1)

        right_tabs = QtWidgets.QTabWidget()
        right_tabs.addTab(self.focus_curve, "Focus curve")
        right_tabs.addTab(self.record_table, "Focus record")
        right_tabs.addTab(self.focus_surface, "Focus surface")
        self.right_tabs = right_tabs

        left = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        left.addWidget(map_box)
        left.addWidget(table_box)
        left.setSizes([520, 360])
        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(viewer_box)
        right.addWidget(right_tabs)
        right.setSizes([560, 320])
        main = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(right)
        main.setSizes([700, 700])
        self.setCentralWidget(main)

        # -- toolbar and status -----------------------------------------------------------------
        tools = self.addToolBar("Review")
        tools.setObjectName("review-tools")
        tools.addAction("Reload", self.reload).setShortcut("F5")
        tools.addAction("Export tile…", self.export_tile_dialog).setShortcut("Ctrl+E")
        tools.addAction("Export table (CSV)…", self.export_table_dialog)
        tools.addAction("Show all", self.tile_map.show_all)
        self.status_label = QtWidgets.QLabel("")
        self.statusBar().addPermanentWidget(self.status_label)

        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(1500)
        self._timer.timeout.connect(self._poll)

        self.resize(1400, 900)
        self.reload()
        self.tile_map.show_all()

    # ----------------------------------------------------------------------------------------
    # loading
    # ----------------------------------------------------------------------------------------
    @property
    def n_tiles(self) -> int:
        """Tiles with at least one version in the file."""
        return len(self._rows)

    def _reopen(self) -> ScanReader:
        """A fresh reader of the file; the old one is closed first.

        New tiles are seen by reopening, never by `ScanReader.refresh()`: with HDF5 2.0 a
        SWMR refresh while another identifier of the same dataset is open (a second reader,
        or the reader's own cached dataset handles) makes every read return the first chunk.
        Reopening costs a few milliseconds and is always right."""
        try:
            self.reader.close()
        except Exception:
            log.debug("closing the old reader failed", exc_info=True)
        self.reader = ScanReader(self.path)
        self._closed = False
        return self.reader

    def reload(self) -> None:
        """Re-read the file (also after a resume replaced it) and refresh every view."""
        try:
            self._reopen()
        except Exception as exc:
            self._timer.stop()
            self._closed = True
            self.last_dialog = dialogs.show_error(
                self, "Review", f"Cannot read {self.path}:\n{exc}"
            )
            return
        r = self.reader
        plan = r.plan
        fw, fh = r.fov_um
        self.tile_map.set_planned_tiles(
            TileGeometry(t.index, t.row, t.col, t.x_um, t.y_um, fw, fh) for t in r.planned_tiles
        )
        x0, y0, x1, y1 = plan.region.bounds
        self.tile_map.set_region((x0, y0, x1, y1))
        self.focus_surface.set_bounds((x0, y0, x1, y1))
        tiles = r.tiles
        half_dof = half_depth_of_field(plan.objective)
        self._rows.clear()
        self._records.clear()
        self._flags.clear()
        for row, rec in enumerate(tiles):
            if rec["superseded"]:
                continue
            idx = int(rec["index"])
            self._rows[idx] = row
            self._records[idx] = rec
            self._flags[idx] = flag_reasons(rec, plan.focus.min_confidence, half_dof)
        xs, ys, zs = [], [], []
        for idx, row in self._rows.items():
            rec = self._records[idx]
            self.tile_map.add_tile_image(
                idx,
                float(rec["x_um"]),
                float(rec["y_um"]),
                fw,
                fh,
                r.thumbnail(row),
                dim=bool(rec["skipped"]),
            )
            if not rec["skipped"]:
                quality = (
                    0.0 if self._flags[idx] else float(np.nan_to_num(rec["confidence"], nan=1.0))
                )
                self.tile_map.set_tile_focus(idx, float(rec["z_um"]), quality)
                xs.append(float(rec["x_um"]))
                ys.append(float(rec["y_um"]))
                zs.append(float(rec["z_um"]))
        self.tile_map.refresh_overlay()
        if zs:
            self.focus_surface.set_points(np.array(xs), np.array(ys), np.array(zs))
        self._fill_table()
        self._n_seen = r.n_tiles
        flagged = sum(1 for f in self._flags.values() if f)
        self.status_label.setText(
            f"{r.status} · {self.n_tiles}/{r.n_planned} tiles · {flagged} flagged · "
            f"{plan.objective} · {r.tile_shape[1]}×{r.tile_shape[0]} px · "
            f"{r.file_size / 1e6:.1f} MB"
        )
        if r.status == "running":
            self._timer.start()
        else:
            self._timer.stop()
        if self.current_index is not None and self.current_index in self._rows:
            self.select_tile(self.current_index)

    def _poll(self) -> None:
        if self._closed:
            return
        try:
            r = self._reopen()
        except Exception:
            self.reload()  # says what is wrong
            return
        if r.n_tiles != self._n_seen or r.status != "running":
            self.reload()

    def scan_finished(self, ev: Any) -> None:
        """A scan or rescan from the main window finished: re-read if it was this file."""
        if Path(getattr(ev, "path", "") or "").resolve() == Path(self.path).resolve():
            self.reload()
            self.statusBar().showMessage("reloaded: the scan writing this file has finished", 6000)
            if ev.reason is FinishReason.ERROR:
                self.statusBar().showMessage(f"rescan stopped: {ev.message}", 8000)

    def _fill_table(self) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self._rows))
        for i, idx in enumerate(sorted(self._rows)):
            rec = self._records[idx]
            z = float(rec["z_um"])
            truth = float(rec["true_focus_um"])
            err = z - truth if np.isfinite(truth) else float("nan")
            conf = float(rec["confidence"])
            flags = "; ".join(self._flags[idx]) or _note(rec)
            cells = [
                _NumItem(idx, str(idx)),
                _NumItem(int(rec["row"]), str(int(rec["row"]))),
                _NumItem(int(rec["col"]), str(int(rec["col"]))),
                _NumItem(float(rec["x_um"]), f"{float(rec['x_um']):.1f}"),
                _NumItem(float(rec["y_um"]), f"{float(rec['y_um']):.1f}"),
                _NumItem(z, f"{z:.2f}"),
                _NumItem(abs(err), f"{err:+.2f}" if np.isfinite(err) else ""),
                _NumItem(conf, f"{conf:.2f}" if np.isfinite(conf) else ""),
                _NumItem(int(rec["frames"]), str(int(rec["frames"]))),
                QtWidgets.QTableWidgetItem(flags),
            ]
            for c, item in enumerate(cells):
                item.setData(QtCore.Qt.ItemDataRole.UserRole, idx)
                if self._flags[idx]:
                    item.setForeground(pg.mkColor(220, 60, 40))
                self.table.setItem(i, c, item)
        if not self._sort_set:  # tile order first; later the person's choice is kept
            self._sort_set = True
            self.table.horizontalHeader().setSortIndicator(0, QtCore.Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self._apply_filter()

    def _apply_filter(self, *_: object) -> None:
        only = self.flagged_only.isChecked()
        for i in range(self.table.rowCount()):
            idx = self.table.item(i, 0).data(QtCore.Qt.ItemDataRole.UserRole)
            self.table.setRowHidden(i, only and not self._flags.get(idx))

    # ----------------------------------------------------------------------------------------
    # selection and the tile view
    # ----------------------------------------------------------------------------------------
    def flagged(self) -> list[int]:
        return sorted(i for i, f in self._flags.items() if f)

    def selected_indices(self) -> list[int]:
        rows = {ix.row() for ix in self.table.selectionModel().selectedRows()}
        return sorted(self.table.item(r, 0).data(QtCore.Qt.ItemDataRole.UserRole) for r in rows)

    def select_indices(self, indices: list[int]) -> None:
        wanted = set(indices)
        sel = self.table.selectionModel()
        with QtCore.QSignalBlocker(self.table):
            self.table.clearSelection()
            for i in range(self.table.rowCount()):
                if self.table.item(i, 0).data(QtCore.Qt.ItemDataRole.UserRole) in wanted:
                    sel.select(
                        self.table.model().index(i, 0),
                        QtCore.QItemSelectionModel.SelectionFlag.Select
                        | QtCore.QItemSelectionModel.SelectionFlag.Rows,
                    )

    def select_flagged(self) -> None:
        self.select_indices(self.flagged())

    def _table_selection(self) -> None:
        picked = self.selected_indices()
        if len(picked) == 1:
            self._show_tile(picked[0])

    def select_tile(self, index: int) -> None:
        """Show planned tile `index` (from a map click or the table)."""
        if index not in self._rows:
            self.statusBar().showMessage(f"tile {index} has not been taken", 4000)
            return
        self.select_indices([index])
        self._show_tile(index)

    def _show_tile(self, index: int) -> None:
        if self._closed:
            self.statusBar().showMessage("the file is being written by a scan", 4000)
            return
        self.current_index = index
        row = self._rows[index]
        rec = self._records[index]
        image = self.reader.image(row)
        fw, fh = self.reader.fov_um
        self.tile_map.set_current_tile(float(rec["x_um"]), float(rec["y_um"]), fw, fh)
        title = f"tile {index} (row {int(rec['row'])}, col {int(rec['col'])})"
        if int(rec["version"]) > 0:
            title += f", rescanned ({int(rec['version'])}×)"
        if image is None:
            self.viewer.clear()
            title += ": empty glass, not stored"
        else:
            self.viewer.setImage(
                image,
                autoRange=True,
                autoLevels=image.dtype != np.uint8,
                levels=(0, 255) if image.dtype == np.uint8 else None,
            )
        if self._flags[index]:
            title += "  ⚠ " + "; ".join(self._flags[index])
        self.tile_title.setText(title)
        self._show_record(rec)
        z, values = self.reader.curve(row)
        kind = _text(rec["curve_kind"]) or "metric"
        truth = float(rec["true_focus_um"])
        self.focus_curve.show_focus(
            FocusDone(
                index=index,
                method=_text(rec["method"]),
                z_um=float(rec["z_um"]),
                hint_z_um=float(rec["hint_z_um"]),
                frames=int(rec["frames"]),
                confidence=float(rec["confidence"]),
                ok=bool(rec["ok"]),
                fallback=_text(rec["fallback"]),
                curve_z_um=np.asarray(z, float),
                curve_values=np.asarray(values, float),
                curve_kind=kind,
                calibration=bool(rec["calibration"]),
                image_source=_text(rec["image_source"]) or "capture",
                true_focus_um=truth if np.isfinite(truth) else None,
            )
        )

    def _show_record(self, rec: np.void) -> None:
        names = [n for n in rec.dtype.names if n != "superseded"]
        self.record_table.setRowCount(len(names))
        for i, name in enumerate(names):
            v = rec[name]
            if isinstance(v, bytes | np.bytes_):
                text = _text(v)
            elif isinstance(v, np.floating):
                text = f"{float(v):.4g}"
            else:
                text = str(v.item() if isinstance(v, np.generic) else v)
            self.record_table.setItem(i, 0, QtWidgets.QTableWidgetItem(name))
            self.record_table.setItem(i, 1, QtWidgets.QTableWidgetItem(text))

    def current_image(self) -> np.ndarray | None:
        if self.current_index is None:
            return None
        return self.reader.image(self._rows[self.current_index])

    # ----------------------------------------------------------------------------------------
    # actions
    # ----------------------------------------------------------------------------------------
    def rescan_selected(self) -> None:
        indices = self.selected_indices()
        if not indices:
            self.statusBar().showMessage("select tiles in the table first (Select flagged)", 5000)
            return
        if self._rescan is None:
            self.statusBar().showMessage("rescan needs the main window's microscope", 5000)
            return
        self._rescan(self.path, indices)
        self.statusBar().showMessage(f"rescanning {len(indices)} tiles …")

    def release_file(self) -> None:
        """Close the file so a scan in this process can open it for writing (HDF5 refuses a
        writer while the same process holds a reader); `reload()` reopens it."""
        self._timer.stop()
        self._closed = True
        self.reader.close()
        self.status_label.setText("the scan is writing this file; it reloads when the scan ends")

    def export_tile_to(self, path: str | Path) -> Path:
        image = self.current_image()
        if image is None:
            raise ValueError("no tile image selected (empty glass tiles have none)")
        rec = self._records[self.current_index]
        meta = {n: rec[n] for n in rec.dtype.names}
        meta.update(pixel_size_um=self.reader.pixel_size_um, scan_file=self.path)
        return export_tile(image, path, meta)

    def export_table_to(self, path: str | Path) -> Path:
        tiles = self.reader.tiles
        half_dof = half_depth_of_field(self.reader.plan.objective)
        flags = np.array(
            [
                "; ".join(flag_reasons(r, self.reader.plan.focus.min_confidence, half_dof))
                for r in tiles
            ],
            dtype=object,
        )
        return export_table(tiles, path, {"flags": flags})

    def export_tile_dialog(self) -> None:
        if self.current_index is None:
            self.statusBar().showMessage("select a tile first", 4000)
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self,
            "Export tile",
            f"tile-{self.current_index}.tif",
            "TIFF (*.tif *.tiff);;PNG (*.png)",
        )
        if path:
            self._guard(lambda: self.export_tile_to(path), "Export tile")

    def export_table_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export tile table", Path(self.path).with_suffix(".csv").name, "CSV (*.csv)"
        )
        if path:
            self._guard(lambda: self.export_table_to(path), "Export table")

    def _guard(self, fn: Callable[[], Any], title: str) -> None:
        try:
            out = fn()
        except Exception as exc:
            self.last_dialog = dialogs.show_error(self, title, str(exc))
            return
        self.statusBar().showMessage(f"written {out}", 6000)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt naming
        self._timer.stop()
        try:
            self.reader.close()
        except Exception:
            log.debug("closing the reader failed", exc_info=True)
        super().closeEvent(event)


__all__ = ["ReviewWindow", "flag_reasons", "focus_quality"]
