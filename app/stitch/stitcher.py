"""A stitching run over a scan file, in memory: flat-field and white balance, registration,
global placement, and the figures that describe it. `stored.save` puts the result in the file.

The flat-field comes first (from a sample of at most 400 tiles) so that registration sees
corrected tiles; registration then reads every tile about once, in grid order through a small
cache, so memory stays flat whatever the scan's size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slidescan.app.stitch.accuracy import error_summary
from slidescan.app.stitch.camera import tile_images, transform_for
from slidescan.app.stitch.flatfield import (
    NONE,
    FlatField,
    IlluminationEstimator,
    IlluminationParams,
    WhiteBalance,
)
from slidescan.app.stitch.geometry import StageToMosaic, TileLayout
from slidescan.app.stitch.pairs import RegisteredPairs, register_layout
from slidescan.app.stitch.placement import REGISTERED, STAGE, Placement, PlacementParams, place
from slidescan.app.stitch.register import RegistrationParams, grey
from slidescan.app.stitch.tolerance import StageTolerance, stage_tolerance

METHOD = "overlap-ncc + weighted least squares"

#: progress(stage, done, total); stage is "flat-field" or "register"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class StitchParams:
    registration: RegistrationParams = field(default_factory=RegistrationParams)
    placement: PlacementParams = field(default_factory=PlacementParams)
    illumination: IlluminationParams = field(default_factory=IlluminationParams)
    #: Search radius (um) instead of the one the stage's stated errors give.
    search_um: float | None = None
    #: Estimate flat-field and white balance (False: F = 1, no white balance).
    flatfield: bool = True


@dataclass(frozen=True)
class StitchResult:
    layout: TileLayout
    pairs: RegisteredPairs
    placement: Placement
    #: (n, 2) top-left x, y of each tile in the mosaic (pixels, the top-left of all is 0, 0)
    xy: np.ndarray
    #: stage (x, y) um of the mosaic's pixel (0, 0) corner
    origin_um: tuple[float, float]
    tolerance: StageTolerance
    radius_px: float
    flatfield: FlatField
    white_balance: WhiteBalance
    seconds: float

    def figures(self) -> dict[str, Any]:
        """What `slidescan stitch` reports (and the run's info keeps)."""
        p = self.placement
        registered = self.pairs.registered
        out: dict[str, Any] = {
            "tiles": self.layout.n,
            "tiles_registered": int((p.source == REGISTERED).sum()),
            "tiles_stage": int((p.source == STAGE).sum()),
            "pairs": int(len(self.pairs.pairs)),
            "pairs_registered": int(registered.sum()),
            "pairs_used": int(p.used.sum()),
            "pairs_rejected": int(len(self.pairs.pairs) - p.used.sum()),
            "pairs_outliers": int((registered & ~p.used).sum()),
            "pairs_refused": self.pairs.refusals(),
            "rms_pair_residual_px": _finite(p.rms_pair_residual_px),
            "search_radius_px": round(self.radius_px, 2),
            "register_s": round(self.pairs.seconds, 3),
            "seconds": round(self.seconds, 3),
            "flatfield_source": self.flatfield.source,
            "white_balance_source": self.white_balance.source,
        }
        if self.layout.has_truth:
            placed = error_summary(self.xy, self.layout.true_px)
            stage = error_summary(self.layout.stage_px, self.layout.true_px)
            out["rms_error_px"] = _finite(placed["rms_error_px"])
            out["max_error_px"] = _finite(placed["max_error_px"])
            out["stage_rms_error_px"] = _finite(stage["rms_error_px"])
            out["stage_max_error_px"] = _finite(stage["max_error_px"])
            if out["tiles_stage"] and out["tiles_registered"]:  # the overlaps' own accuracy
                reg = p.source == REGISTERED
                own = error_summary(self.xy[reg], self.layout.true_px[reg])
                out["registered_rms_error_px"] = _finite(own["rms_error_px"])
                out["registered_max_error_px"] = _finite(own["max_error_px"])
        return out


def _finite(v: float) -> float | None:
    return None if not math.isfinite(v) else round(float(v), 4)


def search_radius_px(reader, tolerance: StageTolerance, search_um: float | None) -> float:
    """The registration search radius in pixels for this scan."""
    step_um = max(reader.fov_um) * (1.0 - float(reader.plan.overlap))
    radius_um = tolerance.search_radius_um(step_um) if search_um is None else float(search_um)
    return radius_um / reader.pixel_size_um


def stitch(
    reader,
    params: StitchParams | None = None,
    transform: StageToMosaic | None = None,
    progress: Progress | None = None,
) -> StitchResult:
    """Stitch the scan `reader` (a `ScanReader`) reads; nothing is written. `progress` is
    called after each tile of the flat-field sample and each registered pair; an exception
    raised from it (a GUI worker's cancel) ends the run with nothing stored. `transform`:
    stage um to mosaic pixels (default: from the pixel size and the camera's measured mounting,
    `app/stitch/camera.py`)."""
    t0 = time.perf_counter()
    params = params or StitchParams()
    transform = transform or transform_for(reader)
    images = tile_images(reader)
    layout = TileLayout.from_records(reader.tiles, reader.tile_shape, transform)
    tolerance = stage_tolerance(reader.profile)
    radius = search_radius_px(reader, tolerance, params.search_um)
    channels = _channels(reader)
    if params.flatfield:
        flat, white = estimate_illumination(reader, layout, params.illumination, progress, images)
    else:
        flat = FlatField.flat((reader.tile_shape[0], reader.tile_shape[1]), channels)
        white = WhiteBalance((1.0,) * channels, 1.0, NONE)
    # Registration sees the tiles flat-field corrected: the vignetting is the same in every
    # tile, so in an overlap it falls off in one tile and rises in the other, and on a
    # tissue edge that opposite ramp pulled the best NCC up to 0.9 px off the true shift.
    flat_grey = grey(flat.image())

    def prepare(image: np.ndarray) -> np.ndarray:
        return grey(image) / flat_grey

    report = None if progress is None else (lambda done, total: progress("register", done, total))
    pairs = register_layout(layout, images, radius, params.registration, report, prepare)
    stage_sigma_px = math.hypot(tolerance.repeatability_um, tolerance.play_um)
    stage_sigma_px /= reader.pixel_size_um
    placement = place(
        layout.n,
        pairs.pairs,
        pairs.shifts,
        pairs.ncc,
        layout.stage_px,
        stage_sigma_px,
        params.placement,
    )
    low = placement.xy.min(axis=0) if layout.n else np.zeros(2)
    xy = placement.xy - low
    origin = transform.to_um(low[None, :])[0]
    return StitchResult(
        layout=layout,
        pairs=pairs,
        placement=placement,
        xy=xy,
        origin_um=(float(origin[0]), float(origin[1])),
        tolerance=tolerance,
        radius_px=radius,
        flatfield=flat,
        white_balance=white,
        seconds=time.perf_counter() - t0,
    )


def estimate_illumination(
    reader,
    layout: TileLayout,
    params: IlluminationParams,
    progress: Progress | None = None,
    images: Callable[[int], np.ndarray | None] | None = None,
) -> tuple[FlatField, WhiteBalance]:
    """Flat-field and white balance from a sample of the scan's tiles (at most
    `params.max_tiles`, spread over the scan; each read once, through `images`, default
    `reader.image`)."""
    images = images or reader.image
    dtype = np.dtype(reader.attrs.get("tile_dtype", "|u1"))
    estimator = IlluminationEstimator(reader.tile_shape, dtype, params)
    rows = sorted(_sample(layout.rows, params.max_tiles))
    for k, row in enumerate(rows):
        image = images(row)
        if image is not None:
            estimator.add(image)
        if progress is not None:
            progress("flat-field", k + 1, len(rows))
    return estimator.estimate()


def _channels(reader) -> int:
    return int(reader.tile_shape[2]) if len(reader.tile_shape) == 3 else 1


def _sample(rows: np.ndarray, limit: int) -> set[int]:
    """At most `limit` of `rows`, spread evenly over them."""
    if rows.size <= limit:
        return {int(r) for r in rows}
    pick = np.linspace(0, rows.size - 1, limit).round().astype(int)
    return {int(rows[k]) for k in pick}
