"""diffcnn's per-slide calibration (ours, not in the paper): a gain and an offset fitted to the
first tiles of a slide correct every later prediction (see `DiffCNNFocus`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Bounds of the per-slide gain: a fitted gain outside them is clipped (a sign of bad
#: calibration data, not of optics: NA and cover-glass errors change it by tens of percent).
GAIN_RANGE = (0.75, 1.5)
#: Two points of one calibration tile give a slope only when their predictions are this far
#: apart (model um); closer, their noise would dominate.
MIN_SLOPE_SPAN_UM = 0.5


@dataclass(frozen=True)
class SlideCorrection:
    """distance = gain x network + offset (model um) between the network distances `lo_um`
    and `hi_um` the calibration measured; beyond them the gain is not known, so the line
    continues with slope 1 (only the offset at that end applies). Identity by default."""

    gain: float = 1.0
    offset_um: float = 0.0
    lo_um: float = -math.inf
    hi_um: float = math.inf

    def __call__(self, distance_um: float) -> float:
        inside = min(max(distance_um, self.lo_um), self.hi_um)
        return self.gain * inside + self.offset_um + (distance_um - inside)


def fit_correction(tiles: Sequence[Sequence[tuple[float, float]]]) -> SlideCorrection:
    """Per-slide correction from calibration tiles, each a list of (p, y) points: the network's
    distance p and the sweep's y (model um).

    The gain is the median of the slopes between points of the *same* tile (so a per-field
    offset does not leak into it), clipped to `GAIN_RANGE`; 1 when fewer than two such slopes
    exist. The offset is then the median of y - gain * p over all points, and the gain holds
    over the range of p measured. No points: the identity.
    """
    points = [pt for tile in tiles for pt in tile]
    if not points:
        return SlideCorrection()
    slopes = [
        (y2 - y1) / (p2 - p1)
        for tile in tiles
        for (p1, y1), (p2, y2) in itertools.combinations(tile, 2)
        if abs(p2 - p1) >= MIN_SLOPE_SPAN_UM
    ]
    gain = float(np.clip(np.median(slopes), *GAIN_RANGE)) if len(slopes) >= 2 else 1.0
    offset = float(np.median([y - gain * p for p, y in points]))
    p = [pt[0] for pt in points]
    return SlideCorrection(gain, offset, float(min(p)), float(max(p)))
