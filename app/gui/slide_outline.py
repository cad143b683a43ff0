"""The slide under the tile map: the glass (the stage's XY travel, when it is slide-sized) and,
where the microscope knows its slide (`Microscope.truth`, the simulator), the tissue area and
an overview picture. The overview is rendered on the `DeviceWorker`, never on the GUI thread."""

from __future__ import annotations

import numpy as np

from slidescan.app.gui.tile_map import TileMap
from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.microscope import Microscope

#: Stage travel up to this size (um) is taken to be the slide itself.
SLIDE_SIZED_UM = 200_000
#: Overview pixels across the tissue's longer side (about), and its margin as a fraction.
OVERVIEW_PX = 600
OVERVIEW_MARGIN = 0.08


def show_slide(tile_map: TileMap, microscope: Microscope, worker: DeviceWorker) -> None:
    lim = microscope.stage.limits
    (x0, x1), (y0, y1) = lim.range("x"), lim.range("y")
    slide_sized = 0 < x1 - x0 <= SLIDE_SIZED_UM and 0 < y1 - y0 <= SLIDE_SIZED_UM
    tile_map.set_slide_bounds((x0, y0, x1, y1) if slide_sized else None)
    tile_map.set_overview(None)
    truth = microscope.truth
    if truth is None:
        tile_map.set_tissue_bounds(None)
        tile_map.zoom_to_tissue()
        return
    bx0, by0, bx1, by1 = truth.slide_bounds_um
    tile_map.set_tissue_bounds((bx0, by0, bx1, by1))
    size = max(bx1 - bx0, by1 - by0)
    pixel = max(5.0, size / OVERVIEW_PX)
    margin = OVERVIEW_MARGIN * size

    def shown(image: np.ndarray) -> None:
        h, w = image.shape[:2]
        ox, oy = bx0 - margin, by0 - margin
        tile_map.set_overview(image, (ox, oy, ox + w * pixel, oy + h * pixel))

    worker.submit(
        truth.overview,
        pixel,
        margin,
        on_result=shown,
        on_error=lambda exc: None,  # a picture that cannot be made is no error worth a dialog
        label="slide overview",
        receiver=tile_map,
    )
    tile_map.zoom_to_tissue()
