"""The tissue regions on the tile map, and the mouse tools that edit them.

Regions found on the overview are outlined in green, regions drawn by the person in orange;
the selected one is drawn thicker. As the map's `MapTool` the layer sees clicks and drags
first:
- "select" (the default): a click inside a region selects it (Delete or Remove takes it out);
  drags pan and double-clicks move the stage as usual;
- "rect": a left drag draws a rectangle, added when the button is released;
- "polygon": each click adds a corner, a double-click, Enter or a click on the first corner
  closes it, Esc or Backspace take back; at least three corners.
After a region is drawn the tool returns to "select". The layer only shows and draws: what a
drawn region does to the plan is the owner's (`tissue_scan.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6 import QtCore, QtGui, QtWidgets

from slidescan.app.gui._pg import pg
from slidescan.app.gui.tile_map import TileMap
from slidescan.app.gui.tissue_regions import DRAWN

TOOLS = ("select", "rect", "polygon")
#: Found regions green, drawn ones orange (the draft dashed magenta, like the scan region).
COLOURS = {"found": (70, 230, 120), DRAWN: (255, 160, 40)}
#: A click this close (screen pixels) to the first corner closes a polygon.
CLOSE_PX = 10


def _pen(rgb: tuple[int, int, int], width: float, dash: bool = False) -> QtGui.QPen:
    pen = pg.mkPen(rgb, width=width)
    pen.setCosmetic(True)
    if dash:
        pen.setStyle(QtCore.Qt.PenStyle.DashLine)
    return pen


class TissueLayer(QtCore.QObject):
    #: A region drawn with the mouse: its corners, (x, y) stage um.
    regionDrawn = QtCore.Signal(object)
    #: The selected region (-1: none).
    selectionChanged = QtCore.Signal(int)
    #: Delete pressed on the map with a region selected.
    removeRequested = QtCore.Signal()
    #: The tool now in use ("select", "rect", "polygon").
    toolChanged = QtCore.Signal(str)

    def __init__(self, tile_map: TileMap) -> None:
        super().__init__(tile_map)
        self._map = tile_map
        self.items: list[QtWidgets.QGraphicsPolygonItem] = []
        self._kinds: list[str] = []
        self.selected: int | None = None
        self.tool = "select"
        self._corners: list[QtCore.QPointF] = []
        self._draft = QtWidgets.QGraphicsPolygonItem()
        self._draft.setPen(_pen((255, 120, 220), 2, dash=True))
        self._draft.setZValue(14)
        self._draft.setVisible(False)
        tile_map.addItem(self._draft)
        tile_map.scene().sigMouseMoved.connect(self._mouse_moved)
        tile_map.installEventFilter(self)
        self._active = False

    # -- showing -------------------------------------------------------------------------------
    def show(self, polygons: Sequence[Sequence[tuple[float, float]]], kinds: Sequence[str]) -> None:
        """Draw these regions (replacing those shown); the selection is cleared."""
        for item in self.items:
            self._map.removeItem(item)
        self.items = []
        if len(kinds) != len(polygons):
            raise ValueError("one kind per polygon")
        self._kinds = list(kinds)
        for poly in polygons:
            item = QtWidgets.QGraphicsPolygonItem(
                QtGui.QPolygonF([QtCore.QPointF(x, y) for x, y in poly])
            )
            item.setZValue(9)
            self._map.addItem(item)
            self.items.append(item)
        self._activate(True)
        self.select(None)

    def set_visible(self, on: bool) -> None:
        """Show the regions and be the map's tool (on), or neither."""
        for item in self.items:
            item.setVisible(on)
        self._activate(on)

    def clear(self) -> None:
        self.show([], [])
        self.set_tool("select")
        self._activate(False)

    def polygons(self) -> list[list[tuple[float, float]]]:
        """The regions as drawn on the map (stage um)."""
        return [[(p.x(), p.y()) for p in item.polygon()] for item in self.items]

    def select(self, k: int | None) -> None:
        self.selected = k if k is not None and 0 <= k < len(self.items) else None
        for i, item in enumerate(self.items):
            rgb = COLOURS.get(self._kinds[i], COLOURS["found"])
            chosen = i == self.selected
            item.setPen(_pen(rgb, 3.5 if chosen else 1.5))
            item.setBrush(pg.mkBrush(*rgb, 70 if chosen else 22))
        self.selectionChanged.emit(-1 if self.selected is None else self.selected)

    def _activate(self, on: bool) -> None:
        """Be the map's tool (on) or stop being it."""
        self._active = on
        if on:
            self._map.set_tool(self)
        elif self._map.tool is self:
            self._map.set_tool(None)

    # -- tools ---------------------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; choose from {', '.join(TOOLS)}")
        self._corners = []
        self._draft.setVisible(False)
        self.tool = tool
        if tool != "select":
            self._activate(True)
        self._map.setCursor(
            QtCore.Qt.CursorShape.ArrowCursor
            if tool == "select"
            else QtCore.Qt.CursorShape.CrossCursor
        )
        self.toolChanged.emit(tool)

    def map_click(self, x: float, y: float, double: bool) -> bool:
        if self.tool == "polygon":
            if double or (self._near_first(x, y) and len(self._corners) >= 3):
                self.finish_polygon()
            else:
                self.add_corner(x, y)
            return True
        if self.tool == "rect" or double:
            return self.tool == "rect"
        k = self._index_at(x, y)
        if k is None and self.selected is None:
            return False
        self.select(k)
        return True

    def map_drag(self, start: QtCore.QPointF, end: QtCore.QPointF, finished: bool) -> bool:
        if self.tool != "rect":
            return False
        rect = QtCore.QRectF(start, end).normalized()
        if not finished:
            self._draft.setPolygon(QtGui.QPolygonF(rect))
            self._draft.setVisible(True)
            return True
        self._draft.setVisible(False)
        if rect.width() > 0 and rect.height() > 0:
            self.draw_rect(rect.left(), rect.top(), rect.right(), rect.bottom())
        return True

    def draw_rect(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """A rectangle drawn (also what a drag in "rect" does)."""
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        self.set_tool("select")
        self.regionDrawn.emit([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def add_corner(self, x: float, y: float) -> None:
        self._corners.append(QtCore.QPointF(x, y))
        self._update_draft()

    def finish_polygon(self) -> None:
        corners = [(p.x(), p.y()) for p in self._corners]
        # a double-click's two clicks may have put the same corner down twice
        unique = [c for i, c in enumerate(corners) if i == 0 or c != corners[i - 1]]
        self.set_tool("select")
        if len(unique) >= 3:
            self.regionDrawn.emit(unique)

    def _near_first(self, x: float, y: float) -> bool:
        if not self._corners:
            return False
        sx, sy = self._map.viewbox.viewPixelSize()
        first = self._corners[0]
        return abs(first.x() - x) <= CLOSE_PX * sx and abs(first.y() - y) <= CLOSE_PX * sy

    def _update_draft(self, moving: QtCore.QPointF | None = None) -> None:
        pts = list(self._corners) + ([moving] if moving is not None else [])
        self._draft.setPolygon(QtGui.QPolygonF(pts))
        self._draft.setVisible(bool(pts))

    def _mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        if self.tool == "polygon" and self._corners:
            self._update_draft(self._map.viewbox.mapSceneToView(scene_pos))

    def _index_at(self, x: float, y: float) -> int | None:
        """The region under (x, y); drawn ones (on top) first."""
        point = QtCore.QPointF(x, y)
        order = [i for i, k in enumerate(self._kinds) if k == DRAWN]
        order += [i for i, k in enumerate(self._kinds) if k != DRAWN]
        for i in order:
            if self.items[i].polygon().containsPoint(point, QtCore.Qt.FillRule.OddEvenFill):
                return i
        return None

    def _wants(self, key: int) -> bool:
        """Whether a key press means something to the tool in use (and so must not go to the
        window's shortcuts: Esc there stops the stage)."""
        k = QtCore.Qt.Key
        if self.tool == "polygon":
            return key in (k.Key_Return, k.Key_Enter, k.Key_Escape, k.Key_Backspace)
        if self.tool == "rect":
            return key == k.Key_Escape
        return key in (k.Key_Delete, k.Key_Backspace) and self.selected is not None

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802
        kind = event.type()
        if not self._active or kind not in (
            QtCore.QEvent.Type.KeyPress,
            QtCore.QEvent.Type.ShortcutOverride,
        ):
            return False
        key = event.key()
        if kind == QtCore.QEvent.Type.ShortcutOverride:
            if self._wants(key):
                event.accept()  # deliver it as a key press, to us
                return True
            return False
        k = QtCore.Qt.Key
        if self.tool == "polygon":
            if key in (k.Key_Return, k.Key_Enter):
                self.finish_polygon()
                return True
            if key == k.Key_Escape:
                self.set_tool("select")
                return True
            if key == k.Key_Backspace and self._corners:
                self._corners.pop()
                self._update_draft()
                return True
        if self.tool == "rect" and key == k.Key_Escape:
            self.set_tool("select")
            return True
        if (
            self.tool == "select"
            and key in (k.Key_Delete, k.Key_Backspace)
            and self.selected is not None
        ):
            self.removeRequested.emit()
            return True
        return False
