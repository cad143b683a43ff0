"""Scan tissue: take the slide's overview, find the tissue on it, let the person edit the
regions on the map, and make the scan cover them.

`find()` runs `acquire_overview` (the simulator's own overview, or on hardware a fast
pre-scan of the profile's `slide_area_um`, with progress and Cancel) and `detect_tissue` on
the `DeviceWorker`, like every hardware call of the window; meanwhile the owner's `busy`
hook keeps the stage and camera for it. The overview is then shown under the tile map at its
stage coordinates, the regions found (grown by the margin) as polygons on it
(tissue_layer.py), and the scan panel switches to its tissue mode, whose plan is a
`PolygonsRegion` of exactly the polygons shown (tissue_regions.py). Edits (margin, remove,
add a rectangle or polygon) replace both at once. When a scan of those regions starts, its
runner gets the overview (`overview_for`), which the scan file keeps as the slide's macro
image.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.hardware_connection import HardwareConnection
from slidescan.app.gui.notifier import Notifier
from slidescan.app.gui.scan_panel import ScanPanel
from slidescan.app.gui.tile_map import TileMap
from slidescan.app.gui.tissue_layer import TissueLayer
from slidescan.app.gui.tissue_regions import DRAWN, TissueRegions
from slidescan.app.gui.worker import DeviceWorker
from slidescan.app.plan import PolygonsRegion, ScanPlan
from slidescan.app.records import Overview

log = logging.getLogger(__name__)


class OverviewCancelled(Exception):
    """The person cancelled the overview pre-scan."""


class TissueScan(QtCore.QObject):
    #: (done, total) fields of the pre-scan (emitted from the worker thread, queued).
    _progress = QtCore.Signal(int, int)
    #: The overview and regions are shown (or cleared): the plan preview follows.
    changed = QtCore.Signal()

    def __init__(
        self,
        hardware: HardwareConnection,
        worker: DeviceWorker,
        notifier: Notifier,
        tile_map: TileMap,
        panel: ScanPanel,
        busy: Callable[[bool], None] | None = None,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._hardware = hardware
        self._worker = worker
        self._notifier = notifier
        self._map = tile_map
        self._panel = panel
        self._busy_hook = busy or (lambda on: None)
        self.controls = panel.tissue_controls
        self.layer = TissueLayer(tile_map)
        self.regions: TissueRegions | None = None
        self.overview: Overview | None = None
        self.busy = False
        self.dialog: QtWidgets.QProgressDialog | None = None
        self._cancel = threading.Event()
        self._progress.connect(self._show_progress)
        c = self.controls
        c.findRequested.connect(self.find)
        c.marginChanged.connect(self.set_margin)
        c.toolRequested.connect(self._tool_requested)
        c.removeRequested.connect(self.remove_selected)
        self.layer.regionDrawn.connect(self.add)
        self.layer.removeRequested.connect(self.remove_selected)
        self.layer.selectionChanged.connect(lambda k: c.remove_button.setEnabled(k >= 0))
        self.layer.toolChanged.connect(c.show_tool)
        panel.mode_tissue.toggled.connect(self._mode_toggled)

    # -- finding -------------------------------------------------------------------------------
    def find(self) -> None:
        """Take the overview and find the tissue (on the worker; progress in a dialog)."""
        microscope = self._hardware.microscope
        if microscope is None:
            self._notifier.error("Scan tissue", "No microscope is connected.")
            return
        if self.busy:
            return
        profile = self._hardware.profile
        area = profile.slide_area_um if profile is not None else None
        if microscope.truth is None and area is None:
            self._notifier.error(
                "Scan tissue",
                "A pre-scan for the overview needs the slide area: set slide_area_um in the "
                "hardware profile (x0, y0, x1, y1 in stage µm of the slide holder's opening).",
            )
            return
        self._set_busy(True)
        self._cancel.clear()
        self._open_dialog()

        def report(done: int, total: int) -> None:
            if self._cancel.is_set():
                raise OverviewCancelled("overview cancelled")
            self._progress.emit(done, total)

        def job():
            from slidescan.app.slide.overview import acquire_overview
            from slidescan.app.slide.tissue import detect_tissue

            overview = acquire_overview(
                microscope, area_um=tuple(area) if area else None, progress=report
            )
            if self._cancel.is_set():
                raise OverviewCancelled("overview cancelled")
            return overview, detect_tissue(overview)

        self._worker.submit(job, on_result=self._found, on_error=self._failed, label="overview")

    def _open_dialog(self) -> None:
        dlg = QtWidgets.QProgressDialog(
            "Taking the slide's overview …", "Cancel", 0, 0, self._map.window()
        )
        dlg.setWindowTitle("Scan tissue")
        dlg.setMinimumDuration(0)
        dlg.setAutoClose(False)
        dlg.setAutoReset(False)
        dlg.setWindowModality(QtCore.Qt.WindowModality.WindowModal)
        dlg.canceled.connect(self.cancel)
        dlg.open()
        self.dialog = dlg

    def cancel(self) -> None:
        if self.busy:
            self._cancel.set()
            if self.dialog is not None:
                self.dialog.setLabelText("Cancelling after this field …")

    def _show_progress(self, done: int, total: int) -> None:
        if self.dialog is not None and not self._cancel.is_set():
            self.dialog.setRange(0, max(total, 1))
            self.dialog.setValue(min(done, total))
            self.dialog.setLabelText(f"Taking the slide's overview: field {done} of {total}")

    def _close_dialog(self) -> None:
        if self.dialog is not None:
            self.dialog.canceled.disconnect(self.cancel)
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None

    def _found(self, result: tuple[Overview, object]) -> None:
        if self._cancel.is_set():  # cancelled (or another microscope) as it finished
            self._failed(OverviewCancelled("overview cancelled"))
            return
        self._close_dialog()
        self._set_busy(False)
        overview, tissue = result
        self.overview = overview
        self.regions = TissueRegions(tissue, self.controls.margin.value())
        self._map.set_overview(overview.image, overview.bounds_um)
        self.controls.set_editable(True)
        self._show()
        if not len(self.regions):
            self._notifier.status("no tissue found on the overview: draw the regions to scan")
        self._panel.mode_tissue.setChecked(True)
        x0, y0, x1, y1 = self.regions.region().bounds if len(self.regions) else overview.bounds_um
        self._map.viewbox.setRange(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0), padding=0.08)
        log.info("tissue: %d region(s), %.1f mm2", len(self.regions), self.regions.tissue_area_mm2)

    def _failed(self, exc: BaseException) -> None:
        self._close_dialog()
        self._set_busy(False)
        if isinstance(exc, OverviewCancelled):
            self._notifier.status("overview cancelled", 5000)
            return
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._notifier.error("Scan tissue", f"The overview could not be taken: {text}")

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.controls.set_busy(busy)
        self._busy_hook(busy)

    # -- editing -------------------------------------------------------------------------------
    def set_margin(self, margin_um: float) -> None:
        if self.regions is None:
            return
        self.regions.set_margin(margin_um)
        self._show()

    def remove_selected(self) -> None:
        k = self.layer.selected
        if self.regions is None or k is None:
            return
        self.regions.remove(k)
        self._show()

    def add(self, points: list[tuple[float, float]]) -> None:
        if self.regions is None:
            self._notifier.status("find the tissue first (the regions are edited on its overview)")
            return
        try:
            self.regions.add(points)
        except ValueError as exc:
            self._notifier.status(str(exc), 4000)
            return
        self._show()
        self._panel.mode_tissue.setChecked(True)

    def _tool_requested(self, tool: str) -> None:
        if tool != "select":
            self._panel.mode_tissue.setChecked(True)
        self.layer.set_tool(tool)

    def _show(self) -> None:
        """The map and the plan from the regions, together."""
        regions = self.regions
        if regions is None:
            return
        self.layer.show(regions.polygons, regions.kinds)
        self.layer.set_visible(self._panel.mode_tissue.isChecked())
        self._panel.set_tissue_region(regions.region())
        self.changed.emit()

    def _mode_toggled(self, on: bool) -> None:
        self.layer.set_visible(on and self.regions is not None)
        if not on:
            self.layer.set_tool("select")

    def show_tiles(self, n_tiles: int) -> None:
        """The summary line, once the preview knows how many tiles the regions take."""
        regions = self.regions
        if regions is None:
            return
        drawn = sum(1 for k in regions.kinds if k == DRAWN)
        text = f"{len(regions)} region{'s' if len(regions) != 1 else ''}"
        if drawn:
            text += f" ({drawn} drawn)"
        text += f" · {regions.tissue_area_mm2:.1f} mm² of tissue found · {n_tiles} tiles"
        self.controls.summary.setText(text)

    # -- the scan ------------------------------------------------------------------------------
    def overview_for(self, plan: ScanPlan) -> Overview | None:
        """The overview a scan of `plan` keeps: this one when the plan covers these regions."""
        if (
            self.overview is not None
            and self.regions is not None
            and isinstance(plan.region, PolygonsRegion)
            and plan.region == self.regions.region()
        ):
            return self.overview
        return None

    def reshow(self) -> None:
        """Put the overview back under the map (the map was given the slide again)."""
        if self.overview is not None:
            self._map.set_overview(self.overview.image, self.overview.bounds_um)

    def reset(self) -> None:
        """Forget the overview and regions (another microscope, another slide)."""
        if self.busy:
            self.cancel()
        self.regions = None
        self.overview = None
        self.layer.clear()
        self.controls.set_editable(False)
        self.controls.summary.setText("no overview yet")
        self._panel.set_tissue_region(None)
        if self._panel.mode_tissue.isChecked():
            self._panel.mode_grid.setChecked(True)
