"""The scan plan: what to scan and how, as a frozen pydantic model that round-trips to JSON.

A plan says nothing about a particular microscope except the objective's name; the tile grid
is computed from the camera's field of view at run time with `ScanPlan.tiles(fov_w, fov_h)`.
Coordinates are stage micrometres; rows run along +y, columns along +x.

Grid rule: neighbouring tiles are `fov * (1 - overlap)` apart; a rectangle gets the fewest
columns (rows) whose union covers its width (height), centred on the rectangle. A polygon gets
the grid of its bounding box, keeping only tiles whose footprint intersects the polygon.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slidescan.focus.surface import MIN_POINTS as SURFACE_MIN_POINTS

_EPS = 1e-9


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RectRegion(_Frozen):
    """An axis-aligned rectangle in stage um."""

    kind: Literal["rect"] = "rect"
    x0: float
    y0: float
    x1: float
    y1: float

    @model_validator(mode="after")
    def _ordered(self) -> RectRegion:
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise ValueError(
                f"region x0,y0,x1,y1 = {self.x0},{self.y0},{self.x1},{self.y1}: "
                "need x1 > x0 and y1 > y0"
            )
        return self

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.x0, self.y0, self.x1, self.y1


class PolygonRegion(_Frozen):
    """A simple polygon (vertices in order, not closed) in stage um."""

    kind: Literal["polygon"] = "polygon"
    points: tuple[tuple[float, float], ...] = Field(min_length=3)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        return min(xs), min(ys), max(xs), max(ys)

    @model_validator(mode="after")
    def _has_area(self) -> PolygonRegion:
        x0, y0, x1, y1 = self.bounds
        if not (x1 > x0 and y1 > y0):
            raise ValueError("polygon region has no area")
        return self


class PolygonsRegion(_Frozen):
    """Several simple polygons in stage um, scanned as their union: the tissue pieces found on
    a slide's overview, each grown by a margin (app/slide/tissue.py)."""

    kind: Literal["polygons"] = "polygons"
    polygons: tuple[tuple[tuple[float, float], ...], ...] = Field(min_length=1)

    @field_validator("polygons")
    @classmethod
    def _each_a_polygon(
        cls, v: tuple[tuple[tuple[float, float], ...], ...]
    ) -> tuple[tuple[tuple[float, float], ...], ...]:
        for k, poly in enumerate(v):
            if len(poly) < 3:
                raise ValueError(f"polygon {k} has {len(poly)} points; a polygon needs 3")
        return v

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        xs = [p[0] for poly in self.polygons for p in poly]
        ys = [p[1] for poly in self.polygons for p in poly]
        return min(xs), min(ys), max(xs), max(ys)

    @model_validator(mode="after")
    def _has_area(self) -> PolygonsRegion:
        x0, y0, x1, y1 = self.bounds
        if not (x1 > x0 and y1 > y0):
            raise ValueError("the polygons have no area")
        return self


Region = Annotated[RectRegion | PolygonRegion | PolygonsRegion, Field(discriminator="kind")]

#: A focus method's parameter value in a plan (JSON): the method's `Params` model checks it.
#: None is "the method's automatic choice" for a parameter whose default is a number.
FocusParam = bool | int | float | str | list[float] | None


class FocusSettings(_Frozen):
    """How each tile gets its z.

    strategy "per-tile": run `method` at every tile, hinted by the online focus predictor.
    strategy "focusmap": run `method` at `survey_points` sparse points first, fit `surface`,
    then take every tile at the surface's z with no per-tile focusing.
    A per-tile result with ok=False, an exception, or confidence below `min_confidence` is a
    warning, and the tile falls back to the predicted z.
    """

    method: str = "zsweep"
    params: dict[str, FocusParam] = Field(default_factory=dict)
    strategy: Literal["per-tile", "focusmap"] = "per-tile"
    survey_points: int = Field(default=9, ge=3, le=400)
    surface: Literal["plane", "quadratic", "tps"] = "quadratic"
    min_confidence: float = Field(default=0.2, ge=0.0, le=1.0)
    #: Search range around the hint (um); None: the method's default.
    range_um: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _enough_survey_points(self) -> FocusSettings:
        need = SURFACE_MIN_POINTS[self.surface]
        if self.strategy == "focusmap" and self.survey_points < need:
            raise ValueError(
                f"a {self.surface} focus map needs at least {need} survey points, "
                f"got {self.survey_points}"
            )
        return self


class TissueSettings(_Frozen):
    """Skip empty-glass tiles, judged from one quick frame at the predicted z (app/tissue.py)."""

    enabled: bool = True
    #: Least fraction of the field that must look like tissue for the tile to be taken.
    min_fraction: float = Field(default=0.01, ge=0.0, le=1.0)
    od_threshold: float = Field(default=0.15, gt=0.0)
    saturation_threshold: float = Field(default=0.08, gt=0.0, lt=1.0)


@dataclass(frozen=True, slots=True)
class Tile:
    """One field in the plan. `index` is the position in the visiting order."""

    index: int
    row: int
    col: int
    x_um: float
    y_um: float


class ScanPlan(_Frozen):
    """Everything that defines a scan, independent of the run."""

    region: Region
    objective: str = "20x/0.75"
    profile: str = "simulator"
    overlap: float = Field(default=0.1, ge=0.0, le=0.5)
    order: Literal["serpentine", "raster"] = "serpentine"
    focus: FocusSettings = Field(default_factory=FocusSettings)
    tissue: TissueSettings = Field(default_factory=TissueSettings)
    output: str = ""
    compression: Literal["none", "gzip", "lzf"] = "none"
    #: z of the first hint (um); None: wherever the focus drive stands when the scan starts.
    start_z_um: float | None = None

    @field_validator("objective")
    @classmethod
    def _objective_named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("objective name is empty")
        return v

    # -- JSON --------------------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> ScanPlan:
        return cls.model_validate_json(text)

    # -- construction helpers ----------------------------------------------------------------
    @classmethod
    def grid(
        cls,
        rows: int,
        cols: int,
        centre_um: tuple[float, float],
        fov_um: tuple[float, float],
        overlap: float = 0.1,
        **fields: Any,
    ) -> ScanPlan:
        """A rectangle that yields exactly `rows` x `cols` tiles of `fov_um`, centred."""
        if rows < 1 or cols < 1:
            raise ValueError(f"need at least one row and one column, got {rows} x {cols}")
        fw, fh = fov_um
        width = fw + (cols - 1) * fw * (1.0 - overlap)
        height = fh + (rows - 1) * fh * (1.0 - overlap)
        cx, cy = centre_um
        region = RectRegion(
            x0=cx - width / 2, y0=cy - height / 2, x1=cx + width / 2, y1=cy + height / 2
        )
        return cls(region=region, overlap=overlap, **fields)

    # -- the tile grid -----------------------------------------------------------------------
    def tiles(self, fov_w_um: float, fov_h_um: float) -> list[Tile]:
        """The tiles in visiting order, with overlap applied."""
        if fov_w_um <= 0 or fov_h_um <= 0:
            raise ValueError(f"field of view must be positive, got {fov_w_um} x {fov_h_um}")
        x0, y0, x1, y1 = self.region.bounds
        xs = _axis_centres(x0, x1, fov_w_um, self.overlap)
        ys = _axis_centres(y0, y1, fov_h_um, self.overlap)
        cells: list[tuple[int, int]] = []
        for r in range(len(ys)):
            cols = range(len(xs))
            if self.order == "serpentine" and r % 2 == 1:
                cols = reversed(cols)
            cells.extend((r, c) for c in cols)
        polygons: tuple[tuple[tuple[float, float], ...], ...] = ()
        if isinstance(self.region, PolygonRegion):
            polygons = (self.region.points,)
        elif isinstance(self.region, PolygonsRegion):
            polygons = self.region.polygons
        if polygons:

            def inside(r: int, c: int) -> bool:
                rect = (
                    xs[c] - fov_w_um / 2,
                    ys[r] - fov_h_um / 2,
                    xs[c] + fov_w_um / 2,
                    ys[r] + fov_h_um / 2,
                )
                return any(rect_intersects_polygon(rect, poly) for poly in polygons)

            cells = [(r, c) for r, c in cells if inside(r, c)]
        return [Tile(i, r, c, xs[c], ys[r]) for i, (r, c) in enumerate(cells)]

    def summary(self) -> str:
        """One line for people: region, objective, focus and options."""
        x0, y0, x1, y1 = self.region.bounds
        focus = self.focus.method
        if self.focus.strategy == "focusmap":
            focus = f"focusmap({self.focus.method}, {self.focus.survey_points} pts, {self.focus.surface})"
        kind = self.region.kind
        if isinstance(self.region, PolygonsRegion):
            kind = f"tissue ({len(self.region.polygons)} regions)"
        return (
            f"{kind} [{x0:.0f},{y0:.0f}]-[{x1:.0f},{y1:.0f}] um, {self.objective}, "
            f"overlap {self.overlap:.0%}, {self.order}, focus {focus}, "
            f"tissue detection {'on' if self.tissue.enabled else 'off'}, "
            f"compression {self.compression}"
        )


def _axis_centres(lo: float, hi: float, fov: float, overlap: float) -> list[float]:
    step = fov * (1.0 - overlap)
    extent = hi - lo
    n = 1 if extent <= fov + _EPS else math.ceil((extent - fov) / step - 1e-6) + 1
    span = fov + (n - 1) * step
    first = lo + (extent - span) / 2 + fov / 2
    return [first + i * step for i in range(n)]


def parse_region(text: str) -> RectRegion:
    """'x0,y0,x1,y1' in um -> RectRegion; a clear error otherwise."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"region {text!r}: expected four numbers x0,y0,x1,y1 (um)")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"region {text!r}: expected four numbers x0,y0,x1,y1 (um)") from None
    return RectRegion(x0=x0, y0=y0, x1=x1, y1=y1)


# -- geometry ----------------------------------------------------------------------------------
def point_in_polygon(x: float, y: float, poly: Sequence[tuple[float, float]]) -> bool:
    """Even-odd ray casting."""
    inside = False
    n = len(poly)
    for i in range(n):
        (xa, ya), (xb, yb) = poly[i], poly[(i + 1) % n]
        if (ya > y) != (yb > y):
            x_cross = xa + (y - ya) * (xb - xa) / (yb - ya)
            if x < x_cross:
                inside = not inside
    return inside


def _segment_hits_rect(
    a: tuple[float, float], b: tuple[float, float], rect: tuple[float, float, float, float]
) -> bool:
    """Liang-Barsky: does segment a-b meet the closed rectangle?"""
    x0, y0, x1, y1 = rect
    dx, dy = b[0] - a[0], b[1] - a[1]
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, a[0] - x0), (dx, x1 - a[0]), (-dy, a[1] - y0), (dy, y1 - a[1])):
        if abs(p) < _EPS:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def rect_intersects_polygon(
    rect: tuple[float, float, float, float], poly: Sequence[tuple[float, float]]
) -> bool:
    """True if the rectangle (x0, y0, x1, y1) and the polygon overlap with positive area
    (a tile that only touches the outline at an edge or a corner holds none of the region)."""
    x0, y0, x1, y1 = rect
    shrink = 1e-6 * max(x1 - x0, y1 - y0)
    rect = (x0 + shrink, y0 + shrink, x1 - shrink, y1 - shrink)
    n = len(poly)
    if any(_segment_hits_rect(poly[i], poly[(i + 1) % n], rect) for i in range(n)):
        return True
    # No edge touches the rectangle: it is either wholly inside the polygon or disjoint.
    return point_in_polygon((rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2, poly)
