"""Review a scan file: the tile map with thumbnails, the stitched slide (slide_viewer.py: pan
and zoom over the pyramid, tile boundaries, focus overlay), a table of tiles, one tile at full
resolution with its focus record and curve (a made image with its raw shots), the focus
surface, out-of-focus flags (review_records.py), rescan of selected tiles into the same file,
stitching, and exports (a tile, the table, the whole slide).

Any scan file opens: finished, still being written (it re-reads new tiles every couple of
seconds while its status is "running") or left by a crashed scan (the reader trusts only the
committed tiles). Rescanned tiles appear as their newest version.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from slidescan.app.events import Finished, FinishReason, FocusDone
from slidescan.app.export.tiles import export_table, export_tile
from slidescan.app.gui import dialogs
from slidescan.app.gui.camera_mount import CameraMount
from slidescan.app.gui.focus_plots import FocusCurvePlot, FocusSurfacePlot
from slidescan.app.gui.map_panel import MapPanel
from slidescan.app.gui.review_records import (
    flag_reasons,
    half_depth_of_field,
    is_made,
    is_pending,
    takes,
    text_of,
)
from slidescan.app.gui.review_table import COLUMNS, TileTable
from slidescan.app.gui.review_tile_view import TileImage, TileView, tile_images
from slidescan.app.gui.slide_model import open_viewer_slide
from slidescan.app.gui.slide_viewer import SlideViewer
from slidescan.app.gui.tile_map import TileGeometry, TileMap
from slidescan.app.store import ScanReader

log = logging.getLogger(__name__)

#: How often (ms) a file that is still being written is re-read.
POLL_MS = 1500


def _focus_event(index: int, rec: np.void, z: np.ndarray, values: np.ndarray) -> FocusDone:
    """A tile record as the `FocusDone` the focus plot draws."""
    truth = float(rec["true_focus_um"])
    return FocusDone(
        index=index,
        method=text_of(rec["method"]),
        z_um=float(rec["z_um"]),
        hint_z_um=float(rec["hint_z_um"]),
        frames=int(rec["frames"]),
        confidence=float(rec["confidence"]),
        ok=bool(rec["ok"]),
        fallback=text_of(rec["fallback"]),
        curve_z_um=np.asarray(z, float),
        curve_values=np.asarray(values, float),
        curve_kind=text_of(rec["curve_kind"]) or "metric",
        calibration=bool(rec["calibration"]),
        image_source=text_of(rec["image_source"]) or "capture",
        true_focus_um=truth if np.isfinite(truth) else None,
    )


def _record_text(v: Any) -> str:
    if isinstance(v, bytes | np.bytes_):
        return text_of(v)
    if isinstance(v, np.floating):
        return number_text(float(v))
    return str(v.item() if isinstance(v, np.generic) else v)


def number_text(v: float) -> str:
    """A record's number as a person reads it: stage positions to 0.1 µm with no exponent,
    small values to four decimals, timestamps whole."""
    if not np.isfinite(v) or v == 0 or abs(v) < 1e-3:
        return f"{v:.4g}"
    if abs(v) >= 1e6:
        return f"{v:.3f}"
    decimals = 1 if abs(v) >= 1000 else 4
    return f"{v:.{decimals}f}".rstrip("0").rstrip(".")


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
        self._takes: dict[int, int] = {}
        self._n_seen = -1
        self._slide_shown = False
        self._slide_key: tuple[int, int] | None = None
        self.export_dialog: QtWidgets.QDialog | None = None
        self._build_views()
        self.setCentralWidget(self._build_layout())
        self._build_toolbar()
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.resize(1400, 900)
        self.reload()
        self.tile_map.show_all()

    # ----------------------------------------------------------------------------------------
    # construction
    # ----------------------------------------------------------------------------------------
    def _build_views(self) -> None:
        self.tile_map = TileMap()
        self.tile_map.tileClicked.connect(self.select_tile)
        self.map_panel = MapPanel(self.tile_map, QtWidgets.QLabel("click a tile to open it"))
        self.overlay_combo = self.map_panel.overlay_combo
        self.slide_viewer = SlideViewer()
        self.slide_viewer.tileClicked.connect(self.select_tile)
        self.slide_viewer.stitchRequested.connect(self.export_slide_dialog)
        self.tile_view = TileView()
        self.viewer = self.tile_view.viewer
        self.tile_title = self.tile_view.title
        self.record_table = QtWidgets.QTableWidget(0, 2)
        self.record_table.setHorizontalHeaderLabels(["field", "value"])
        self.record_table.horizontalHeader().setStretchLastSection(True)
        self.record_table.verticalHeader().hide()
        self.record_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.focus_curve = FocusCurvePlot()
        self.focus_surface = FocusSurfacePlot()
        self.tiles = TileTable(can_rescan=self._rescan is not None)
        self.tiles.tilePicked.connect(self._show_tile)
        self.tiles.rescanRequested.connect(self.rescan_selected)
        self.table = self.tiles.table
        self.flagged_only = self.tiles.flagged_only
        self.rescan_button = self.tiles.rescan_button

    def _build_layout(self) -> QtWidgets.QSplitter:
        self.right_tabs = QtWidgets.QTabWidget()
        self.right_tabs.addTab(self.focus_curve, "Focus curve")
        self.right_tabs.addTab(self.record_table, "Focus record")
        self.right_tabs.addTab(self.focus_surface, "Focus surface")

        def split(
            orientation: QtCore.Qt.Orientation, widgets: list[QtWidgets.QWidget], sizes: list[int]
        ) -> QtWidgets.QSplitter:
            s = QtWidgets.QSplitter(orientation)
            for w in widgets:
                s.addWidget(w)
            s.setSizes(sizes)
            return s

        vertical, horizontal = QtCore.Qt.Orientation.Vertical, QtCore.Qt.Orientation.Horizontal
        self.left_tabs = QtWidgets.QTabWidget()
        self.left_tabs.addTab(self.map_panel, "Tile map")
        self.left_tabs.addTab(self.slide_viewer, "Slide")
        self.left_tabs.setTabToolTip(1, "The stitched slide: pan and zoom, click a tile")
        self.left_tabs.currentChanged.connect(self._left_tab_changed)
        left = split(vertical, [self.left_tabs, self.tiles], [520, 360])
        right = split(vertical, [self.tile_view, self.right_tabs], [560, 320])
        return split(horizontal, [left, right], [700, 700])

    def _build_toolbar(self) -> None:
        tools = self.addToolBar("Review")
        tools.setObjectName("review-tools")
        tools.addAction("Reload", self.reload).setShortcut("F5")
        tools.addAction("Export tile…", self.export_tile_dialog).setShortcut("Ctrl+E")
        tools.addAction("Export table (CSV)…", self.export_table_dialog)
        tools.addAction("Export slide…", self.export_slide_dialog).setShortcut("Ctrl+Shift+E")
        tools.addAction("Slide", self.show_slide).setShortcut("Ctrl+L")
        tools.addAction("Show all", self.tile_map.show_all)
        self.status_label = QtWidgets.QLabel("")
        self.statusBar().addPermanentWidget(self.status_label)

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
        Reopening costs a few milliseconds and is always right. The slide viewer reads through
        the same reader: it pauses while the reader is swapped and reads on from the new one
        (`reload` rebuilds its slide when the file has changed)."""
        slide = self.slide_viewer.slide
        swapping = slide.reader_swap() if slide is not None else contextlib.nullcontext(None)
        with swapping as swap:
            try:
                self.reader.close()
            except Exception:
                log.debug("closing the old reader failed", exc_info=True)
            self.reader = ScanReader(self.path)
            if swap is not None:
                swap(self.reader)
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
        self._read_records()
        self._show_plan()
        self._show_tiles()
        self.tiles.fill(self._records, self._flags)
        self._n_seen = r.n_tiles
        flagged = sum(1 for f in self._flags.values() if f)
        self.status_label.setText(
            f"{r.status} · {self.n_tiles}/{r.n_planned} tiles · {flagged} flagged · "
            f"{r.plan.objective} · {r.tile_shape[1]}×{r.tile_shape[0]} px · "
            f"{r.file_size / 1e6:.1f} MB"
        )
        if r.status == "running":
            self._timer.start()
        else:
            self._timer.stop()
        slide_wanted = self.left_tabs.currentWidget() is self.slide_viewer
        if (slide_wanted or self.slide_viewer.slide is not None) and (
            self._slide_key != self._file_key()
        ):
            self._load_slide()
        if self.current_index is not None and self.current_index in self._rows:
            self.select_tile(self.current_index)

    def _read_records(self) -> None:
        """The newest version of every tile taken, and its flags."""
        plan = self.reader.plan
        half_dof = half_depth_of_field(plan.objective)
        self._rows.clear()
        self._records.clear()
        self._flags.clear()
        self._takes = takes(self.reader.tiles)
        for row, rec in enumerate(self.reader.tiles):
            if rec["superseded"]:
                continue
            idx = int(rec["index"])
            self._rows[idx] = row
            self._records[idx] = rec
            self._flags[idx] = flag_reasons(rec, plan.focus.min_confidence, half_dof)

    def _show_plan(self) -> None:
        r = self.reader
        fw, fh = r.fov_um
        self.tile_map.set_mount(CameraMount.of(r.profile))
        self.tile_map.set_planned_tiles(
            TileGeometry(t.index, t.row, t.col, t.x_um, t.y_um, fw, fh) for t in r.planned_tiles
        )
        bounds = r.plan.region.bounds
        self.tile_map.set_region(bounds)
        self.focus_surface.set_bounds(bounds)

    def _show_tiles(self) -> None:
        """Thumbnails, focus overlay and the focus surface of the tiles taken."""
        fw, fh = self.reader.fov_um
        xs, ys, zs = [], [], []
        self.tile_map.set_pending(i for i, rec in self._records.items() if is_pending(rec))
        for idx, row in self._rows.items():
            rec = self._records[idx]
            x, y = float(rec["x_um"]), float(rec["y_um"])
            thumb = self.reader.thumbnail(row)
            self.tile_map.add_tile_image(idx, x, y, fw, fh, thumb, dim=bool(rec["skipped"]))
            if rec["skipped"]:
                continue
            confidence = float(np.nan_to_num(rec["confidence"], nan=1.0))
            quality = 0.0 if self._flags[idx] else confidence
            self.tile_map.set_tile_focus(idx, float(rec["z_um"]), quality)
            xs.append(x)
            ys.append(y)
            zs.append(float(rec["z_um"]))
        self.tile_map.refresh_overlay()
        if zs:
            self.focus_surface.set_points(np.array(xs), np.array(ys), np.array(zs))

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

    # ----------------------------------------------------------------------------------------
    # the stitched slide
    # ----------------------------------------------------------------------------------------
    def show_slide(self) -> None:
        """Show the Slide tab (the stitched slide)."""
        self.left_tabs.setCurrentWidget(self.slide_viewer)

    def _left_tab_changed(self, _: int) -> None:
        if self.left_tabs.currentWidget() is self.slide_viewer and self.slide_viewer.slide is None:
            self._load_slide()

    def _load_slide(self) -> None:
        """(Re)build the viewer's slide on the open reader, keeping the view of the same
        slide."""
        if self._closed:
            return
        keep = self.slide_viewer.slide is not None or self._slide_shown
        self._slide_key = self._file_key()
        try:
            slide = open_viewer_slide(self.reader)
        except Exception as exc:  # an unreadable placement: said in the viewer, no dialog
            log.warning("cannot show the slide of %s: %s", self.path, exc)
            self.slide_viewer.set_slide(None)
            self.slide_viewer.status.setText(f"cannot show the slide: {exc}")
            return
        self.slide_viewer.set_slide(slide, keep_view=keep)
        self._slide_shown = True
        self.slide_viewer.set_selected(self.current_index)

    def _let_go_of_slide(self) -> None:
        """The viewer stops reading through the reader (which is about to close)."""
        self._slide_key = None
        if self.slide_viewer.slide is not None:
            self.slide_viewer.set_slide(None)

    def _file_key(self) -> tuple[int, int]:
        """What the slide shows depends on: the tiles taken and the stitching run."""
        return self.reader.n_tiles, self.reader.stitch_generation

    def export_slide_dialog(self) -> QtWidgets.QDialog:
        """File ▸ Export slide for this file (stitching it first when it is not stitched)."""
        from slidescan.app.gui.export_dialog import ExportSlideDialog

        if self.export_dialog is not None and self.export_dialog.isVisible():
            self.export_dialog.raise_()
            return self.export_dialog
        dlg = ExportSlideDialog(
            self.path,
            self,
            release=lambda _: self.release_file("stitching this file: it reloads when done"),
            reopen=lambda _: self.reload(),
            generation=lambda path: self.stitch_generation() if path == self.path else None,
        )
        dlg.show()  # not modal: the slide can be reviewed while the export runs
        self.export_dialog = dlg
        return dlg

    def scan_finished(self, ev: Finished) -> None:
        """A scan or rescan from the main window finished: re-read if it was this file."""
        if ev.path and Path(ev.path).resolve() == Path(self.path).resolve():
            self.reload()
            self.statusBar().showMessage("reloaded: the scan writing this file has finished", 6000)
            if ev.reason is FinishReason.ERROR:
                self.statusBar().showMessage(f"rescan stopped: {ev.message}", 8000)

    # ----------------------------------------------------------------------------------------
    # selection and the tile view
    # ----------------------------------------------------------------------------------------
    def flagged(self) -> list[int]:
        return self.tiles.flagged()

    def selected_indices(self) -> list[int]:
        return self.tiles.selected_indices()

    def select_indices(self, indices: list[int]) -> None:
        self.tiles.select_indices(indices)

    def select_flagged(self) -> None:
        self.tiles.select_flagged()

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
        fw, fh = self.reader.fov_um
        self.slide_viewer.set_selected(index)
        self.tile_map.set_current_tile(float(rec["x_um"]), float(rec["y_um"]), fw, fh)
        self.tile_view.show_tile(self._tile_title(index, rec), self._tile_images(row, rec))
        self._show_record(rec)
        z, values = self.reader.curve(row)
        self.focus_curve.show_focus(_focus_event(index, rec, z, values))

    def _tile_title(self, index: int, rec: np.void) -> str:
        title = f"tile {index} (row {int(rec['row'])}, col {int(rec['col'])})"
        rescans = self._takes.get(index, 1) - 1
        if rescans > 0:
            title += f", rescanned ({rescans}×)"
        if rec["skipped"]:
            title += ": empty glass, not stored"
        elif is_pending(rec):
            title += ": image still to be made (its raw shots shown)"
        if self._flags[index]:
            title += "  ⚠ " + "; ".join(self._flags[index])
        return title

    def _tile_images(self, row: int, rec: np.void) -> list[TileImage]:
        if is_pending(rec):  # no image yet: the shots it will be made from
            shots = self.reader.shots(row)
            return tile_images(None, text_of(rec["made_kind"]) or "made", shots)
        image = self.reader.image(row)
        if image is None:
            return []
        if not is_made(rec):
            return tile_images(image, None, [])
        kind = text_of(rec["made_kind"]) or "made"
        return tile_images(image, kind, self.reader.shots(row))

    def _show_record(self, rec: np.void) -> None:
        names = [n for n in rec.dtype.names if n != "superseded"]
        self.record_table.setRowCount(len(names))
        for i, name in enumerate(names):
            self.record_table.setItem(i, 0, QtWidgets.QTableWidgetItem(name))
            self.record_table.setItem(i, 1, QtWidgets.QTableWidgetItem(_record_text(rec[name])))

    def current_image(self) -> np.ndarray | None:
        """The image the tile view shows (a made tile's image or one of its raw shots)."""
        if self.current_index is None:
            return None
        return self.tile_view.current_image()

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

    def release_file(
        self, why: str = "the scan is writing this file; it reloads when the scan ends"
    ) -> None:
        """Close the file so a scan or a stitch can open it for writing (HDF5 refuses a writer
        while a reader holds it); `reload()` reopens it."""
        self._timer.stop()
        self._closed = True
        self._let_go_of_slide()
        self.reader.close()
        self.status_label.setText(why)

    def stitch_generation(self) -> int | None:
        """The file's stitching run as this window reads it (None while it has let go)."""
        return None if self._closed else int(self.reader.stitch_generation)

    def export_tile_to(self, path: str | Path) -> Path:
        """Write the image shown (the tile's, or the raw shot chosen) with its record."""
        shown = self.tile_view.current() if self.current_index is not None else None
        if shown is None:
            raise ValueError("no tile image selected (empty glass tiles have none)")
        rec = self._records[self.current_index]
        meta = {n: rec[n] for n in rec.dtype.names}
        meta.update(pixel_size_um=self.reader.pixel_size_um, scan_file=self.path)
        meta.update(shown.metadata())
        image = shown.image
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

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt naming
        if self.export_dialog is not None:
            self.export_dialog.shutdown()  # a job still running stops cleanly
            self.export_dialog.close()
        self._timer.stop()
        self.slide_viewer.shutdown()
        try:
            self.reader.close()
        except Exception:
            log.debug("closing the reader failed", exc_info=True)
        super().closeEvent(event)


__all__ = ["COLUMNS", "ReviewWindow", "flag_reasons"]
