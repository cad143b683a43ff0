"""ScanPlan: JSON round trip, validation, tile grids (overlap, order, polygons)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from slidescan.app.plan import (
    FocusSettings,
    PolygonRegion,
    RectRegion,
    ScanPlan,
    parse_region,
    rect_intersects_polygon,
)


def _plan(**kw) -> ScanPlan:
    return ScanPlan(region=RectRegion(x0=0, y0=0, x1=1000, y1=600), **kw)


def test_json_round_trip_keeps_every_field():
    plan = ScanPlan(
        region=PolygonRegion(points=((0, 0), (500, 0), (250, 400))),
        objective="40x/0.95",
        overlap=0.2,
        order="raster",
        focus=FocusSettings(
            method="brent", params={"metric": "tenengrad", "tol": 0.1}, strategy="focusmap"
        ),
        compression="gzip",
        start_z_um=12.5,
        output="/tmp/a.h5",
    )
    again = ScanPlan.from_json(plan.to_json())
    assert again == plan
    assert again.focus.params == {"metric": "tenengrad", "tol": 0.1}
    assert isinstance(again.region, PolygonRegion)


def test_plan_is_frozen_and_validated():
    plan = _plan()
    with pytest.raises(ValidationError):
        plan.overlap = 0.3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        _plan(overlap=0.9)
    with pytest.raises(ValidationError):
        _plan(compression="zstd")
    with pytest.raises(ValidationError):
        RectRegion(x0=10, y0=0, x1=5, y1=10)
    with pytest.raises(ValidationError):
        ScanPlan.from_json(
            '{"region": {"kind": "rect", "x0": 0, "y0": 0, "x1": 1, "y1": 1}, "bogus": 1}'
        )


def test_grid_gives_exact_rows_cols_with_overlap():
    fov = (332.8, 249.6)
    plan = ScanPlan.grid(4, 5, (1000.0, 2000.0), fov, overlap=0.15)
    tiles = plan.tiles(*fov)
    assert len(tiles) == 20
    xs = sorted({round(t.x_um, 6) for t in tiles})
    ys = sorted({round(t.y_um, 6) for t in tiles})
    assert len(xs) == 5 and len(ys) == 4
    np.testing.assert_allclose(np.diff(xs), fov[0] * 0.85)
    np.testing.assert_allclose(np.diff(ys), fov[1] * 0.85)
    assert np.mean(xs) == pytest.approx(1000.0) and np.mean(ys) == pytest.approx(2000.0)
    # neighbours overlap by exactly 15 % of the field
    assert fov[0] - (xs[1] - xs[0]) == pytest.approx(0.15 * fov[0])


def test_rect_is_covered_by_the_fewest_tiles():
    plan = _plan(overlap=0.1)
    tiles = plan.tiles(300, 200)
    # width 1000: step 270 -> ceil((1000-300)/270)+1 = 4 columns; height 600: 180 -> 4 rows
    assert {t.col for t in tiles} == set(range(4)) and {t.row for t in tiles} == set(range(4))
    left = min(t.x_um for t in tiles) - 150
    right = max(t.x_um for t in tiles) + 150
    assert left <= 0 and right >= 1000  # the union covers the region
    assert right - left < 1000 + 270  # and one fewer column would not


def test_serpentine_and_raster_orders():
    ser = _plan(order="serpentine").tiles(300, 200)
    ras = _plan(order="raster").tiles(300, 200)
    assert [t.index for t in ser] == list(range(len(ser)))
    assert [(t.row, t.col) for t in ser[:8]] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 3),
        (1, 2),
        (1, 1),
        (1, 0),
    ]
    assert [(t.row, t.col) for t in ras[:5]] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    # serpentine never jumps more than one step between consecutive tiles
    steps = [abs(a.x_um - b.x_um) + abs(a.y_um - b.y_um) for a, b in itertools.pairwise(ser)]
    assert max(steps) == pytest.approx(270.0)


def test_polygon_keeps_only_intersecting_tiles():
    tri = PolygonRegion(points=((0, 0), (1000, 0), (0, 1000)))
    tiles = ScanPlan(region=tri, overlap=0.0).tiles(100, 100)
    full = ScanPlan(region=RectRegion(x0=0, y0=0, x1=1000, y1=1000), overlap=0.0).tiles(100, 100)
    assert len(full) == 100
    # cells whose lower-left corner lies under the diagonal x + y < 1000: 55 of them
    assert len(tiles) == 55
    for t in tiles:
        assert (t.x_um - 50) + (t.y_um - 50) < 1000
    assert [t.index for t in tiles] == list(range(len(tiles)))


def test_rect_polygon_intersection_cases():
    square = ((0, 0), (10, 0), (10, 10), (0, 10))
    assert rect_intersects_polygon((2, 2, 3, 3), square)  # inside
    assert rect_intersects_polygon((-5, -5, 20, 20), square)  # contains
    assert rect_intersects_polygon((9, 9, 12, 12), square)  # overlaps a corner
    assert not rect_intersects_polygon((11, 11, 12, 12), square)
    ring_gap = ((0, 0), (10, 0), (10, 10), (6, 10), (6, 2), (4, 2), (4, 10), (0, 10))
    assert not rect_intersects_polygon((4.5, 5, 5.5, 9), ring_gap)  # in the notch


def test_parse_region_errors_are_clear():
    assert parse_region("0, 1, 2.5, 3").bounds == (0, 1, 2.5, 3)
    with pytest.raises(ValueError, match="four numbers"):
        parse_region("1,2,3")
    with pytest.raises(ValueError, match="four numbers"):
        parse_region("a,b,c,d")
    with pytest.raises(ValueError, match="x1 > x0"):
        parse_region("5,0,1,1")


def test_small_region_gets_one_tile_at_its_centre():
    plan = ScanPlan(region=RectRegion(x0=0, y0=0, x1=50, y1=50))
    (tile,) = plan.tiles(300, 200)
    assert (tile.x_um, tile.y_um) == (25.0, 25.0)


def test_a_focus_map_needs_enough_survey_points_for_its_surface():
    from pydantic import ValidationError

    from slidescan.app.plan import FocusSettings

    FocusSettings(strategy="focusmap", survey_points=6, surface="quadratic")
    FocusSettings(strategy="focusmap", survey_points=3, surface="plane")
    with pytest.raises(ValidationError, match="at least 6 survey points, got 5"):
        FocusSettings(strategy="focusmap", survey_points=5, surface="quadratic")
    FocusSettings(strategy="per-tile", survey_points=5, surface="quadratic")  # not used
