"""The tissue regions a "Scan tissue" plan covers, as the person edits them (Qt-free).

They start as `TissueMap.regions(margin)`: each piece of tissue found on the overview, grown
by the margin, as a polygon in stage um. The person may then
- change the margin: the pieces are grown again from the tissue mask;
- remove a region found: its tissue is taken out of the mask, so it stays removed whatever
  the margin (two pieces that a larger margin would join are removed one at a time, before);
- add a region (a rectangle or polygon drawn on the map): kept as drawn, margin or not;
  removing it takes it away again.

`polygons` is what the map shows and `region()` what the plan scans: the same polygons, in
the same order (found ones first, then the ones drawn).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from slidescan.app.plan import PolygonsRegion
from slidescan.app.slide.tissue import TissueMap

Polygon = list[tuple[float, float]]
FOUND, DRAWN = "found", "drawn"


class TissueRegions:
    def __init__(self, tissue: TissueMap, margin_um: float = 100.0) -> None:
        self.tissue = tissue
        self._margin = float(margin_um)
        self._drawn: list[Polygon] = []
        self._found: list[Polygon] = []
        self._find()

    @property
    def overview(self):
        return self.tissue.overview

    @property
    def margin_um(self) -> float:
        return self._margin

    def set_margin(self, margin_um: float) -> None:
        if not margin_um >= 0:
            raise ValueError(f"the margin must be >= 0 um, got {margin_um}")
        self._margin = float(margin_um)
        self._find()

    @property
    def polygons(self) -> list[Polygon]:
        return [*self._found, *self._drawn]

    @property
    def kinds(self) -> list[str]:
        return [FOUND] * len(self._found) + [DRAWN] * len(self._drawn)

    def __len__(self) -> int:
        return len(self._found) + len(self._drawn)

    @property
    def tissue_area_mm2(self) -> float:
        """Tissue still in the plan's found regions (the mask, after removals)."""
        return self.tissue.tissue_area_mm2

    def area_mm2(self) -> float:
        """Area the regions enclose (overlaps counted once per polygon), mm^2."""
        return sum(abs(_shoelace(p)) for p in self.polygons) / 1e6

    def remove(self, k: int) -> None:
        """Take region `k` (of `polygons`) out of the plan."""
        if not 0 <= k < len(self):
            raise IndexError(f"no region {k} (there are {len(self)})")
        if k >= len(self._found):
            del self._drawn[k - len(self._found)]
            return
        self._erase(self._found[k])
        self._find()

    def add(self, points: Sequence[tuple[float, float]]) -> int:
        """Add a drawn region (stage um, at least three corners); returns its number."""
        poly = [(float(x), float(y)) for x, y in points]
        if len(poly) < 3 or abs(_shoelace(poly)) <= 0:
            raise ValueError("a region needs three corners and an area")
        self._drawn.append(poly)
        return len(self) - 1

    def region(self) -> PolygonsRegion | None:
        """What the plan scans: the polygons shown (None when there are none)."""
        polys = self.polygons
        if not polys:
            return None
        return PolygonsRegion(polygons=tuple(tuple(p) for p in polys))

    def index_at(self, x: float, y: float) -> int | None:
        """The region holding stage point (x, y) (drawn ones first: they lie on top)."""
        from slidescan.app.plan import point_in_polygon

        polys = self.polygons
        for k in [*range(len(self._found), len(polys)), *range(len(self._found))]:
            if point_in_polygon(x, y, polys[k]):
                return k
        return None

    # -- the mask ------------------------------------------------------------------------------
    def _find(self) -> None:
        self._found = self.tissue.regions(self._margin)

    def _erase(self, polygon: Polygon) -> None:
        """Clear the mask pixels inside `polygon` (an outline through pixel centres, as
        `TissueMap.regions` gives them)."""
        ov = self.tissue.overview
        p = ov.pixel_size_um
        pts = np.array([((x - ov.x0_um) / p - 0.5, (y - ov.y0_um) / p - 0.5) for x, y in polygon])
        inside = np.zeros(self.tissue.mask.shape, np.uint8)
        cv2.fillPoly(inside, [np.rint(pts).astype(np.int32)], 1)
        mask = self.tissue.mask & ~inside.astype(bool)
        self.tissue = replace(self.tissue, mask=mask)


def _shoelace(poly: Sequence[tuple[float, float]]) -> float:
    xs = np.array([p[0] for p in poly])
    ys = np.array([p[1] for p in poly])
    return 0.5 * float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))
