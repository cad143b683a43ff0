"""What the slide viewer draws over the slide: many rectangles in one item (tile boundaries,
the per-tile focus colours) and a scale bar that keeps a round length as the zoom changes.

`RectsItem` records its rectangles into a `QPicture` once and replays it on every repaint:
thousands of tiles cost one replay, not thousands of Python calls per frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PySide6 import QtCore, QtGui

from slidescan.app.gui._pg import pg


class RectsItem(pg.GraphicsObject):
    """Rectangles (x, y, width, height) in view coordinates, outlined with `pen` (cosmetic:
    the same width on screen at any zoom) and each filled with its own colour, if given."""

    def __init__(self, pen: QtGui.QPen | None = None) -> None:
        super().__init__()
        self._pen = pen if pen is not None else QtGui.QPen(QtCore.Qt.PenStyle.NoPen)
        self._pen.setCosmetic(True)
        self._picture = QtGui.QPicture()
        self._bounds = QtCore.QRectF()
        self.count = 0

    def set_rects(
        self, rects: np.ndarray, colours: Sequence[QtGui.QColor | None] | None = None
    ) -> None:
        self.prepareGeometryChange()
        picture = QtGui.QPicture()
        painter = QtGui.QPainter(picture)
        painter.setPen(self._pen)
        bounds = QtCore.QRectF()
        rects = np.asarray(rects, float).reshape(-1, 4)
        for k, (x, y, w, h) in enumerate(rects):
            r = QtCore.QRectF(x, y, w, h)
            colour = colours[k] if colours is not None else None
            painter.setBrush(
                QtGui.QBrush(colour) if colour is not None else QtCore.Qt.BrushStyle.NoBrush
            )
            painter.drawRect(r)
            bounds = bounds.united(r)
        painter.end()
        self._picture = picture
        self._bounds = bounds
        self.count = len(rects)
        self.update()

    def paint(self, p, *args) -> None:  # noqa: ANN001 - Qt signature
        self._picture.play(p)

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 - Qt naming
        return QtCore.QRectF(self._bounds)


def nice_length(target: float) -> float:
    """The 1, 2 or 5 times a power of ten nearest below `target` (> 0)."""
    if not target > 0:
        return 1.0
    power = 10 ** math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * power <= target:
            return m * power
    return power


def length_text(um: float) -> str:
    if um >= 1000:
        return f"{um / 1000:g} mm"
    return f"{um:g} µm"


class ScaleBar(pg.ScaleBar):
    """A scale bar of a round length in µm, about `target_px` screen pixels long, in a view
    whose unit is a level-0 mosaic pixel of `pixel_size_um`."""

    def __init__(self, pixel_size_um: float, target_px: float = 140.0) -> None:
        super().__init__(
            size=100.0, width=6, brush=(255, 255, 255, 230), pen=(0, 0, 0, 160), offset=(-24, -24)
        )
        self.pixel_size_um = pixel_size_um
        self.target_px = target_px
        self.text.setColor(pg.mkColor(255, 255, 255))
        self.text.fill = pg.mkBrush(0, 0, 0, 150)  # readable over glass and tissue alike

    def updateBar(self) -> None:  # noqa: N802 - pyqtgraph naming
        view = self.parentItem()
        if view is None or self.pixel_size_um <= 0:
            return
        per_screen_px = view.viewPixelSize()[0]  # view units (level-0 px) per screen pixel
        if not per_screen_px > 0:
            return
        um = nice_length(self.target_px * per_screen_px * self.pixel_size_um)
        self.size = um / self.pixel_size_um
        self.text.setText(length_text(um))
        super().updateBar()
