"""The tile map: the slide in stage coordinates with planned and acquired tiles.

What it shows, bottom to top: the slide outline, acquired tiles as thumbnails, an optional
overlay colouring each tile by its focus z or focus quality (with a colour bar), the planned
tile outlines, the scan region, the tile being taken and the camera's current field of view.

Mouse: drag pans, wheel zooms; with "Draw region" on (or Shift held) a left drag draws the scan
region, which can then be moved and resized by its handles. A double-click asks to move the
stage there; a single click on a tile reports its planned index (review uses it). A `MapTool`
set with `set_tool` (the tissue regions' editor) sees clicks and drags first.

Axes are stage micrometres, x to the right and y downwards (like the camera image). With a
camera mount (`set_mount`: the profile's calibrated rotation and mirror) the field of view,
the tile footprints and the thumbnails are drawn turned as the camera sees the slide, and a
mirrored camera's thumbnails mirrored back.

Tiles whose image the focus method is still making from their raw shots (TSVA fuses two
shots after the tile; until then the first shot stands in) are outlined in amber, dashed and
a little inside their footprint (`set_pending`); the outline goes when the image is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui._pg import FOCUS_CMAP, QUALITY_CMAP, add_grid, pg
from slidescan.app.gui.camera_mount import CameraMount

OVERLAYS = ("none", "focus z", "focus quality")
#: Planned tile outlines: light on the dark map, dark over a (bright) overview picture.
PLANNED_PEN = pg.mkPen((200, 200, 200, 110), width=1)
PLANNED_ON_OVERVIEW_PEN = pg.mkPen((20, 30, 45, 150), width=1)
#: Tiles whose image is still to be made: amber, dashed, inset so the tile outline stays seen.
PENDING_PEN = pg.mkPen((255, 176, 32), width=2, style=QtCore.Qt.PenStyle.DashLine)
PENDING_INSET = 0.84


@dataclass(frozen=True)
class TileGeometry:
    index: int
    row: int
    col: int
    x_um: float
    y_um: float
    w_um: float
    h_um: float

    def contains(self, x: float, y: float) -> bool:
        return abs(x - self.x_um) <= self.w_um / 2 and abs(y - self.y_um) <= self.h_um / 2


class MapTool(Protocol):
    """Something that edits on the map (tissue_layer.py): it sees left clicks and drags first
    and returns True for those it used."""

    def map_click(self, x: float, y: float, double: bool) -> bool: ...

    def map_drag(self, start: QtCore.QPointF, end: QtCore.QPointF, finished: bool) -> bool: ...


def _rect_path_xy(
    rects: Iterable[tuple[float, float, float, float]],
    mount: CameraMount | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Outline vertices of many rectangles (cx, cy, w, h) as one NaN-separated polyline,
    turned by the camera `mount` where given."""
    mount = mount or CameraMount()
    xs: list[float] = []
    ys: list[float] = []
    for cx, cy, w, h in rects:
        if mount.square:
            x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
            xs += [x0, x1, x1, x0, x0, np.nan]
            ys += [y0, y0, y1, y1, y0, np.nan]
        else:
            c = mount.footprint(cx, cy, w, h)
            xs += [*c[:, 0], c[0, 0], np.nan]
            ys += [*c[:, 1], c[0, 1], np.nan]
    return np.asarray(xs, float), np.asarray(ys, float)


class _MapViewBox(pg.ViewBox):
    """Pans like any ViewBox, but a left drag draws a rectangle in draw mode or with Shift."""

    def __init__(self, owner: TileMap) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._owner = owner
        self.draw_mode = False

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt naming
        shift = bool(ev.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier)
        tool = self._owner.tool
        if ev.button() == QtCore.Qt.MouseButton.LeftButton and tool is not None:
            start = self.mapSceneToView(ev.buttonDownScenePos())
            end = self.mapSceneToView(ev.scenePos())
            if tool.map_drag(start, end, ev.isFinish()):
                ev.accept()
                return
        if ev.button() == QtCore.Qt.MouseButton.LeftButton and (self.draw_mode or shift):
            ev.accept()
            start = self.mapSceneToView(ev.buttonDownScenePos())
            end = self.mapSceneToView(ev.scenePos())
            self._owner._drawing(start, end, finished=ev.isFinish())
            return
        super().mouseDragEvent(ev, axis)


class TileMap(pg.PlotWidget):
    """A map of the slide; see the module docstring."""

    moveRequested = QtCore.Signal(float, float)
    regionChanged = QtCore.Signal(float, float, float, float)  # x0, y0, x1, y1 um
    tileClicked = QtCore.Signal(int)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        self.viewbox = _MapViewBox(self)
        super().__init__(parent, viewBox=self.viewbox)
        self.setLabel("bottom", "stage x (µm)")
        self.setLabel("left", "stage y (µm)")
        self.grid = add_grid(self, z=-3)  # over the slide and its overview, under the tiles
        self.setMinimumSize(240, 200)

        self._geometry: dict[int, TileGeometry] = {}
        self._thumbs: dict[int, pg.ImageItem] = {}
        self._z: dict[int, float] = {}
        self._quality: dict[int, float] = {}
        self._pending: set[int] = set()
        self._overlay_mode = "none"
        self._slide: tuple[float, float, float, float] | None = None
        self.mount = CameraMount()
        #: Sees clicks and drags first (`MapTool`), e.g. the tissue regions' editor.
        self.tool: MapTool | None = None

        self.slide_item = QtWidgets.QGraphicsRectItem()
        self.slide_item.setPen(pg.mkPen((120, 160, 200), width=2))
        self.slide_item.setBrush(pg.mkBrush(40, 48, 58))
        self.slide_item.setZValue(-10)
        self.slide_item.setVisible(False)
        self.addItem(self.slide_item)

        self.overview_item = pg.ImageItem()
        self.overview_item.setZValue(-5)
        self.overview_item.setOpacity(0.85)
        self.overview_item.setVisible(False)
        self.addItem(self.overview_item)
        self.tissue_item = QtWidgets.QGraphicsRectItem()
        self.tissue_item.setPen(
            pg.mkPen((150, 150, 150), width=1, style=QtCore.Qt.PenStyle.DashLine)
        )
        self.tissue_item.setZValue(-4)
        self.tissue_item.setVisible(False)
        self.addItem(self.tissue_item)

        self.overlay = pg.ImageItem()
        self.overlay.setZValue(5)
        self.overlay.setOpacity(0.5)
        self.overlay.setVisible(False)
        self.addItem(self.overlay)
        self.colorbar = pg.ColorBarItem(
            values=(0, 1), colorMap=FOCUS_CMAP, interactive=False, width=12, label="focus z (µm)"
        )
        self.colorbar.setImageItem(self.overlay, insert_in=self.getPlotItem())
        self.colorbar.setVisible(False)

        self.planned_item = pg.PlotCurveItem(pen=PLANNED_PEN, connect="finite")
        self.planned_item.setZValue(8)
        self.addItem(self.planned_item)

        self.pending_item = pg.PlotCurveItem(pen=PENDING_PEN, connect="finite")
        self.pending_item.setZValue(11)
        self.addItem(self.pending_item)

        self.current_item = QtWidgets.QGraphicsPolygonItem()
        self.current_item.setPen(pg.mkPen((0, 220, 255), width=2))
        self.current_item.setZValue(12)
        self.current_item.setVisible(False)
        self.addItem(self.current_item)

        self.fov_item = QtWidgets.QGraphicsPolygonItem()
        self.fov_item.setPen(pg.mkPen((255, 200, 0), width=2))
        self.fov_item.setZValue(13)
        self.fov_item.setVisible(False)
        self.addItem(self.fov_item)

        self.region_roi: pg.RectROI | None = None
        self._draft = QtWidgets.QGraphicsRectItem()
        self._draft.setPen(pg.mkPen((255, 120, 220), width=2, style=QtCore.Qt.PenStyle.DashLine))
        self._draft.setZValue(14)
        self._draft.setVisible(False)
        self.addItem(self._draft)

        self.scene().sigMouseClicked.connect(self._on_click)

    # -- slide, tiles --------------------------------------------------------------------------
    def set_slide_bounds(self, bounds: tuple[float, float, float, float] | None) -> None:
        self._slide = bounds
        if bounds is None:
            self.slide_item.setVisible(False)
            return
        x0, y0, x1, y1 = bounds
        self.slide_item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        self.slide_item.setVisible(True)

    def set_tissue_bounds(self, bounds: tuple[float, float, float, float] | None) -> None:
        """The area of the slide that holds tissue (dashed), where known."""
        self.tissue_item.setVisible(bounds is not None)
        if bounds is not None:
            x0, y0, x1, y1 = bounds
            self.tissue_item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))

    def set_overview(
        self, image: np.ndarray | None, rect: tuple[float, float, float, float] | None = None
    ) -> None:
        """A low-resolution picture of the slide (macro camera, simulator) under the tiles;
        `rect` is (x0, y0, x1, y1) in um of the image's outer edges."""
        if image is None or rect is None:
            self.overview_item.setVisible(False)
            self.planned_item.setPen(PLANNED_PEN)
            return
        x0, y0, x1, y1 = rect
        self.overview_item.setImage(image, levels=(0, 255) if image.dtype == np.uint8 else None)
        self.overview_item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        self.overview_item.setVisible(True)
        self.planned_item.setPen(PLANNED_ON_OVERVIEW_PEN)  # light lines vanish on glass

    def show_all(self) -> None:
        """Zoom to the slide, the plan and the field of view."""
        rects = []
        if self._slide is not None:
            x0, y0, x1, y1 = self._slide
            rects.append(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        if self.tissue_item.isVisible():
            rects.append(self.tissue_item.rect())
        for g in self._geometry.values():
            rects.append(QtCore.QRectF(g.x_um - g.w_um / 2, g.y_um - g.h_um / 2, g.w_um, g.h_um))
        if self.fov_item.isVisible():
            rects.append(self.fov_item.polygon().boundingRect())
        if not rects:
            return
        total = rects[0]
        for r in rects[1:]:
            total = total.united(r)
        self.viewbox.setRange(total, padding=0.05)

    def zoom_to_tissue(self) -> None:
        """Zoom to the tissue area where it is known, else to everything."""
        if self.tissue_item.isVisible():
            self.viewbox.setRange(self.tissue_item.rect(), padding=0.08)
        else:
            self.show_all()

    def zoom_to_plan(self) -> None:
        if not self._geometry:
            self.show_all()
            return
        g = list(self._geometry.values())
        x0 = min(t.x_um - t.w_um / 2 for t in g)
        x1 = max(t.x_um + t.w_um / 2 for t in g)
        y0 = min(t.y_um - t.h_um / 2 for t in g)
        y1 = max(t.y_um + t.h_um / 2 for t in g)
        self.viewbox.setRange(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0), padding=0.15)

    def set_mount(self, mount: CameraMount) -> None:
        """How the camera sits (the profile's calibration): footprints and thumbnails follow."""
        if mount == self.mount:
            return
        self.mount = mount
        self._draw_planned()
        self._draw_pending()

    def set_planned_tiles(self, tiles: Iterable[TileGeometry]) -> None:
        """Replace the plan: outlines for every tile; clears thumbnails and overlay values."""
        self.clear_acquired()
        self._geometry = {t.index: t for t in tiles}
        self._draw_planned()
        self._update_overlay()

    def _draw_planned(self) -> None:
        xs, ys = _rect_path_xy(
            ((t.x_um, t.y_um, t.w_um, t.h_um) for t in self._geometry.values()), self.mount
        )
        self.planned_item.setData(xs, ys)

    @property
    def planned(self) -> dict[int, TileGeometry]:
        return dict(self._geometry)

    def clear_acquired(self) -> None:
        for item in self._thumbs.values():
            self.removeItem(item)
        self._thumbs.clear()
        self._pending.clear()
        self._draw_pending()
        self._z.clear()
        self._quality.clear()
        self.current_item.setVisible(False)
        self._update_overlay()

    def add_tile_image(
        self,
        index: int,
        x_um: float,
        y_um: float,
        w_um: float,
        h_um: float,
        image: np.ndarray,
        dim: bool = False,
    ) -> None:
        """Show a thumbnail in the tile's footprint (replacing an earlier one); `dim` for a
        tile that was looked at but not taken (empty glass)."""
        item = self._thumbs.get(index)
        if item is None:
            item = pg.ImageItem()
            item.setZValue(1)
            self.addItem(item)
            self._thumbs[index] = item
        levels = (0, 255) if image.dtype == np.uint8 else None
        item.setImage(image, levels=levels, autoLevels=levels is None)
        if self.mount.square:
            item.setRect(QtCore.QRectF(x_um - w_um / 2, y_um - h_um / 2, w_um, h_um))
        else:
            item.setTransform(self.mount.image_transform(x_um, y_um, w_um, h_um, image.shape))
        item.setOpacity(0.35 if dim else 1.0)
        if index not in self._geometry:
            self._geometry[index] = TileGeometry(index, -1, -1, x_um, y_um, w_um, h_um)

    def replace_tile_image(self, index: int, image: np.ndarray) -> bool:
        """A new thumbnail for tile `index` where the map knows the tile (its image made after
        the tile); False when it does not."""
        g = self._geometry.get(index)
        if g is None:
            return False
        self.add_tile_image(index, g.x_um, g.y_um, g.w_um, g.h_um, image)
        return True

    @property
    def thumbnail_count(self) -> int:
        return len(self._thumbs)

    def set_pending(self, indices: Iterable[int]) -> None:
        """The tiles whose image is still to be made (outlined in amber; see the module)."""
        self._pending = {int(i) for i in indices}
        self._draw_pending()

    @property
    def pending(self) -> set[int]:
        return set(self._pending)

    def _draw_pending(self) -> None:
        k = PENDING_INSET
        rects = [
            (g.x_um, g.y_um, g.w_um * k, g.h_um * k)
            for i in sorted(self._pending)
            if (g := self._geometry.get(i)) is not None
        ]
        xs, ys = _rect_path_xy(rects, self.mount)
        self.pending_item.setData(xs, ys)

    def set_current_tile(self, x_um: float, y_um: float, w_um: float, h_um: float) -> None:
        self.current_item.setPolygon(self.mount.polygon(x_um, y_um, w_um, h_um))
        self.current_item.setVisible(True)

    def set_fov(self, x_um: float, y_um: float, w_um: float, h_um: float) -> None:
        """The camera's field of view at the stage position (yellow), turned as the camera is."""
        self.fov_item.setPolygon(self.mount.polygon(x_um, y_um, w_um, h_um))
        self.fov_item.setVisible(True)

    # -- overlay -------------------------------------------------------------------------------
    def set_tile_focus(self, index: int, z_um: float, quality: float) -> None:
        """Record a tile's focus z (um) and quality in [0, 1] for the overlays."""
        self._z[index] = float(z_um)
        self._quality[index] = float(np.clip(quality, 0.0, 1.0))

    def set_overlay(self, mode: str) -> None:
        if mode not in OVERLAYS:
            raise ValueError(f"unknown overlay {mode!r}; choose from {', '.join(OVERLAYS)}")
        self._overlay_mode = mode
        self._update_overlay()

    @property
    def overlay_mode(self) -> str:
        return self._overlay_mode

    def refresh_overlay(self) -> None:
        self._update_overlay()

    def _update_overlay(self) -> None:
        values = self._z if self._overlay_mode == "focus z" else self._quality
        grid = [g for g in self._geometry.values() if g.row >= 0 and g.col >= 0]
        if self._overlay_mode == "none" or not values or not grid:
            self.overlay.setVisible(False)
            self.colorbar.setVisible(False)
            return
        rows = max(g.row for g in grid) + 1
        cols = max(g.col for g in grid) + 1
        img = np.full((rows, cols), np.nan, dtype=np.float32)
        xs = np.full(cols, np.nan)
        ys = np.full(rows, np.nan)
        for g in grid:
            xs[g.col] = g.x_um
            ys[g.row] = g.y_um
            if g.index in values:
                img[g.row, g.col] = values[g.index]
        step_x = float(np.nanmedian(np.diff(xs))) if cols > 1 else grid[0].w_um
        step_y = float(np.nanmedian(np.diff(ys))) if rows > 1 else grid[0].h_um
        x0 = float(np.nanmin(xs)) - step_x / 2
        y0 = float(np.nanmin(ys)) - step_y / 2
        if self._overlay_mode == "focus z":
            finite = img[np.isfinite(img)]
            lo, hi = float(finite.min()), float(finite.max())
            if hi - lo < 0.1:
                lo, hi = (lo + hi) / 2 - 0.05, (lo + hi) / 2 + 0.05
            cmap, label = FOCUS_CMAP, "focus z (µm)"
        else:
            lo, hi = 0.0, 1.0
            cmap, label = QUALITY_CMAP, "focus quality"
        self.overlay.setImage(img, autoLevels=False)
        self.overlay.setRect(QtCore.QRectF(x0, y0, step_x * cols, step_y * rows))
        self.colorbar.setColorMap(cmap)
        self.colorbar.setLevels((lo, hi))
        self.colorbar.getAxis("left").setLabel(label)  # where ColorBarItem puts its label
        self.overlay.setVisible(True)
        self.colorbar.setVisible(True)

    # -- region drawing ------------------------------------------------------------------------
    def set_draw_mode(self, on: bool) -> None:
        self.viewbox.draw_mode = on
        self.setCursor(
            QtCore.Qt.CursorShape.CrossCursor if on else QtCore.Qt.CursorShape.ArrowCursor
        )

    @property
    def region(self) -> tuple[float, float, float, float] | None:
        if self.region_roi is None:
            return None
        pos, size = self.region_roi.pos(), self.region_roi.size()
        return (pos.x(), pos.y(), pos.x() + size.x(), pos.y() + size.y())

    def set_region(
        self, region: tuple[float, float, float, float] | None, emit: bool = False
    ) -> None:
        """Show (or remove with None) the scan region as an editable rectangle."""
        if self.region_roi is not None:
            self.removeItem(self.region_roi)
            self.region_roi = None
        if region is None:
            return
        x0, y0, x1, y1 = region
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        roi = pg.RectROI(
            (x0, y0),
            (x1 - x0, y1 - y0),
            pen=pg.mkPen((255, 120, 220), width=2),
            movable=True,
            rotatable=False,
            removable=False,
        )
        roi.setZValue(11)
        roi.sigRegionChangeFinished.connect(self._emit_region)
        self.addItem(roi)
        self.region_roi = roi
        if emit:
            self._emit_region()

    def _emit_region(self, *_: object) -> None:
        r = self.region
        if r is not None:
            self.regionChanged.emit(*r)

    def _drawing(self, start: QtCore.QPointF, end: QtCore.QPointF, finished: bool) -> None:
        rect = QtCore.QRectF(start, end).normalized()
        if finished:
            self._draft.setVisible(False)
            if rect.width() > 0 and rect.height() > 0:
                self.set_region((rect.left(), rect.top(), rect.right(), rect.bottom()), emit=True)
            return
        self._draft.setRect(rect)
        self._draft.setVisible(True)

    # -- clicks --------------------------------------------------------------------------------
    def set_tool(self, tool: MapTool | None) -> None:
        """The editor that sees clicks and drags first (None: none)."""
        self.tool = tool

    def tile_at(self, x: float, y: float) -> int | None:
        """The planned tile whose footprint holds (x, y); the nearest centre wins on overlap."""
        hits = [g for g in self._geometry.values() if g.contains(x, y)]
        if not hits:
            return None
        return min(hits, key=lambda g: (g.x_um - x) ** 2 + (g.y_um - y) ** 2).index

    def _on_click(self, ev) -> None:  # pyqtgraph MouseClickEvent
        if ev.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        if not self.viewbox.sceneBoundingRect().contains(ev.scenePos()):
            return
        p = self.viewbox.mapSceneToView(ev.scenePos())
        if self.tool is not None and self.tool.map_click(p.x(), p.y(), ev.double()):
            ev.accept()
            return
        if ev.double():
            ev.accept()
            self.moveRequested.emit(p.x(), p.y())
            return
        index = self.tile_at(p.x(), p.y())
        if index is not None:
            self.tileClicked.emit(index)
