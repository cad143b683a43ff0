"""A tile map with its bar below: the overlay choice (focus z, focus quality) and one widget
of the owner's (a "Show all" button, a hint)."""

from __future__ import annotations

from PySide6 import QtWidgets

from slidescan.app.gui.tile_map import OVERLAYS, TileMap


class MapPanel(QtWidgets.QWidget):
    def __init__(
        self,
        tile_map: TileMap,
        trailing: QtWidgets.QWidget | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.tile_map = tile_map
        self.overlay_combo = QtWidgets.QComboBox()
        self.overlay_combo.addItems(OVERLAYS)
        self.overlay_combo.setToolTip("Colour the acquired tiles by focus z or focus quality")
        self.overlay_combo.currentTextChanged.connect(tile_map.set_overlay)
        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(QtWidgets.QLabel("Overlay"))
        bar.addWidget(self.overlay_combo)
        bar.addStretch(1)
        if trailing is not None:
            bar.addWidget(trailing)
        v = QtWidgets.QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(tile_map, 1)
        v.addLayout(bar)
