"""Review's view of one tile at full resolution.

A captured tile shows its image. A tile whose image the focus method made from raw shots
(`image_source` "made", e.g. two shots fused) shows the made image with a chooser beside the
title: the made image or any raw shot, each labelled with its z. The zoom stays as it is when
the choice changes, so the shots can be compared with the made image in place. What is shown
is what Export tile writes (`current_image`, `shown`). A tile whose image is still to be
made (a TSVA scan stopped before it was) offers its raw shots alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui._pg import pg


@dataclass(frozen=True)
class TileImage:
    """One image a tile can show: the made or captured image, or a raw shot."""

    label: str
    image: np.ndarray
    source: str  # "capture", "made" or "shot"
    shot: int | None = None  # 0-based shot number
    z_um: float | None = None  # a shot's z

    def metadata(self) -> dict[str, Any]:
        """What an export records about the image shown."""
        meta: dict[str, Any] = {"image_shown": self.source}
        if self.shot is not None:
            meta.update(shot_index=self.shot, shot_z_um=self.z_um)
        return meta


def tile_images(
    image: np.ndarray | None, made_kind: str | None, shots: list[tuple[float, np.ndarray]]
) -> list[TileImage]:
    """The choices for a tile: its image, then (for a made one) each raw shot with its z. A
    tile whose image is still to be made (`image` None, `made_kind` given) has its shots
    only."""
    if made_kind is None:
        return [] if image is None else [TileImage("captured image", image, "capture")]
    out = [] if image is None else [TileImage(f"made image ({made_kind})", image, "made")]
    n = len(shots)
    for k, (z, shot) in enumerate(shots):
        out.append(TileImage(f"shot {k + 1} of {n}: z {z:.2f} µm", shot, "shot", k, float(z)))
    return out


class TileView(QtWidgets.QWidget):
    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._images: list[TileImage] = []
        self.title = QtWidgets.QLabel("no tile selected")
        self.title.setStyleSheet("font-weight: bold")
        self.source = QtWidgets.QComboBox()
        self.source.setToolTip(
            "The image the focus method made, or one of the raw shots it was made from"
        )
        self.source.setVisible(False)
        self.source.currentIndexChanged.connect(self._show_current)
        self.viewer = pg.ImageView()
        self.viewer.ui.roiBtn.hide()
        self.viewer.ui.menuBtn.hide()
        self.viewer.getView().invertY(True)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.source)
        v = QtWidgets.QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        v.addLayout(top)
        v.addWidget(self.viewer, 1)

    def show_tile(self, title: str, images: list[TileImage]) -> None:
        """Show a tile: `images` from `tile_images` (empty: nothing stored, e.g. empty glass)."""
        self.title.setText(title)
        self._images = images
        with QtCore.QSignalBlocker(self.source):
            self.source.clear()
            for choice in images:
                self.source.addItem(choice.label)
        self.source.setVisible(len(images) > 1)
        if not images:
            self.viewer.clear()
            return
        self._show(images[0].image, auto_range=True)

    def select(self, k: int) -> None:
        """Show choice `k` (0: the tile's image; 1..: its shots)."""
        self.source.setCurrentIndex(k)

    def current(self) -> TileImage | None:
        k = self.source.currentIndex()
        return self._images[k] if 0 <= k < len(self._images) else None

    def current_image(self) -> np.ndarray | None:
        choice = self.current()
        return choice.image if choice is not None else None

    def _show_current(self, k: int) -> None:
        if 0 <= k < len(self._images):
            self._show(self._images[k].image, auto_range=False)

    def _show(self, image: np.ndarray, auto_range: bool) -> None:
        eight_bit = image.dtype == np.uint8
        self.viewer.setImage(
            image,
            autoRange=auto_range,
            autoLevels=auto_range and not eight_bit,  # a shot keeps the levels, to compare
            levels=(0, 255) if eight_bit else None,
        )
