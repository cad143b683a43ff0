"""The scan plan on the tile map: the field of view where the stage stands and the tiles the
scan panel would take, updated as the person edits the panel, draws a region or moves the
stage (grid mode follows the stage).

A tissue plan (the regions found on the overview, tissue_scan.py) shows its polygons through
the tissue layer, not as a rectangle; `shown` tells how many tiles a plan takes.

`PlanPreview` also turns the panel into a `ScanPlan` (`build`): the panel describes the scan,
the connected hardware gives the stage position, the field of view and the profile. Once a scan
starts the map shows that scan's tiles and keeps them until the person edits the plan again.
"""

from __future__ import annotations

from PySide6 import QtCore

from slidescan.app.gui.focus_plots import FocusSurfacePlot
from slidescan.app.gui.hardware_connection import HardwareConnection
from slidescan.app.gui.scan_panel import ScanPanel
from slidescan.app.gui.tile_map import TileGeometry, TileMap
from slidescan.app.plan import PolygonsRegion, ScanPlan, Tile
from slidescan.hardware.base import Position

#: Edits that come in bursts (typing a number, a stage move) are previewed once they settle.
PREVIEW_DELAY_MS = 150


class PlanPreview(QtCore.QObject):
    #: A plan was drawn on the map: (the `ScanPlan`, its number of tiles).
    shown = QtCore.Signal(object, int)

    def __init__(
        self,
        panel: ScanPanel,
        tile_map: TileMap,
        surface: FocusSurfacePlot,
        hardware: HardwareConnection,
    ) -> None:
        super().__init__(panel)
        self._panel = panel
        self._map = tile_map
        self._surface = surface
        self._hardware = hardware
        self._scanning = False
        #: The map holds a scan's tiles: keep them until the person edits the plan.
        self.map_shows_scan = False
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self.preview)
        panel.planChanged.connect(self._edited)
        tile_map.regionChanged.connect(self._region_drawn)
        hardware.positionChanged.connect(self._stage_moved)

    def build(self, output: str | None = None, with_params: bool = True) -> ScanPlan:
        """The plan the scan panel describes, centred on the stage for grid mode; ValueError
        (one readable line) when it cannot be made."""
        pos = self._hardware.stage_position
        if pos is None:
            raise ValueError("the stage position is not known yet")
        hw = self._hardware
        profile = hw.profile_name or "custom"
        return self._panel.build_plan((pos.x, pos.y), hw.fov_um, profile, output, with_params)

    def show(self, plan: ScanPlan) -> list[Tile]:
        """Draw `plan`'s tiles and region on the map (and size the focus surface to it)."""
        fw, fh = self._hardware.fov_um
        tiles = plan.tiles(fw, fh)
        self._map.set_planned_tiles(
            TileGeometry(t.index, t.row, t.col, t.x_um, t.y_um, fw, fh) for t in tiles
        )
        bounds = plan.region.bounds
        # a rectangle to edit, except for tissue regions: the tissue layer draws those
        self._map.set_region(None if isinstance(plan.region, PolygonsRegion) else bounds)
        self._surface.set_bounds(bounds)
        self.shown.emit(plan, len(tiles))
        return tiles

    def preview(self) -> None:
        """Show the tiles the scan panel would take (not while the map shows a scan's)."""
        if self._scanning or self.map_shows_scan or self._hardware.fov_um[0] <= 0:
            return
        try:
            plan = self.build(output="preview.h5", with_params=False)
        except ValueError:
            return
        self.show(plan)

    def scan_started(self, plan: ScanPlan) -> None:
        self._scanning = True
        self.map_shows_scan = True
        self.show(plan)

    def scan_ended(self) -> None:
        self._scanning = False

    def _edited(self) -> None:
        if not self._scanning:
            self.map_shows_scan = False
            self._timer.start()

    def _region_drawn(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self._panel.set_region(x0, y0, x1, y1)
        self._panel.draw_button.setChecked(False)
        if not self._scanning:
            self.map_shows_scan = False
            self.preview()

    def _stage_moved(self, p: Position) -> None:
        fw, fh = self._hardware.fov_um
        if fw > 0:
            self._map.set_fov(p.x, p.y, fw, fh)
        if not self.map_shows_scan and self._panel.mode_grid.isChecked():
            self._timer.start()  # the planned grid follows the stage
