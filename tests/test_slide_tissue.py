"""Before the scan: the overview, tissue on it, and a plan that covers the tissue."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slidescan.app.plan import PolygonsRegion, ScanPlan, point_in_polygon
from slidescan.app.records import Overview
from slidescan.app.slide.overview import acquire_overview, prescan_overview
from slidescan.app.slide.tissue import detect_tissue, optical_density, otsu_threshold
from slidescan.hardware.sim import SimConfig, build_simulator


def _slide(tissue_dir, pixel=20.0) -> tuple[Overview, np.ndarray]:
    """A synthetic overview: two pieces of real tissue (the crops, shrunk) on glass, a hole in
    one, dust specks on the glass; and the true mask."""
    glass = np.full((120, 200, 3), 242, np.uint8)
    truth = np.zeros((120, 200), bool)
    for name, (i0, j0), size in (
        ("he_nanozoomer_0.227um.png", (15, 20), 60),
        ("ki67_nanozoomer_0.227um.png", (40, 120), 50),
    ):
        bgr = cv2.imread(str(tissue_dir / name))
        piece = cv2.resize(bgr[..., ::-1], (size, size), interpolation=cv2.INTER_AREA)
        glass[i0 : i0 + size, j0 : j0 + size] = piece
        truth[i0 : i0 + size, j0 : j0 + size] = True
    glass[40:44, 45:49] = 242  # a small tear inside the first piece: filled
    truth[40:44, 45:49] = True
    for i, j in ((100, 10), (5, 180), (110, 100)):  # dust: removed
        glass[i, j] = 60
    noise = np.random.default_rng(0).normal(0, 3.0, glass.shape)  # camera noise
    glass = np.clip(glass + noise, 0, 255).astype(np.uint8)
    return Overview(glass, 1000.0, 2000.0, pixel), truth


def test_tissue_is_found_specks_dropped_small_holes_filled(tissue_dir):
    overview, truth = _slide(tissue_dir)
    found = detect_tissue(overview)
    # what matters most is missing no tissue; scanning a little glass costs only time
    recall = (found.mask & truth).sum() / truth.sum()
    precision = (found.mask & truth).sum() / found.mask.sum()
    assert recall > 0.98 and precision > 0.85, (recall, precision)
    assert not found.mask[100, 10] and not found.mask[5, 180]  # dust
    assert found.mask[41, 46]  # the small tear is scanned
    assert found.tissue_area_mm2 == pytest.approx(truth.sum() * 400 / 1e6, rel=0.15)
    assert 0.04 <= found.od_threshold <= 0.3


def test_regions_cover_every_tissue_pixel_with_the_margin(tissue_dir):
    overview, _ = _slide(tissue_dir)
    found = detect_tissue(overview)
    polygons = found.regions(margin_um=100.0)
    assert len(polygons) == 2
    ii, jj = np.nonzero(found.mask)
    for i, j in zip(ii[::7], jj[::7], strict=True):
        # every corner of the pixel, pushed out by the margin, is inside one of the regions
        x = overview.x0_um + (j + np.array([0, 1, 0, 1])) * 20.0
        y = overview.y0_um + (i + np.array([0, 0, 1, 1])) * 20.0
        for dx, dy in ((-100, 0), (100, 0), (0, -100), (0, 100)):
            assert any(
                point_in_polygon(xx + dx, yy + dy, poly)
                for poly in polygons
                for xx, yy in zip(x, y, strict=True)
            )


def test_a_tissue_plan_takes_fewer_tiles_than_the_bounding_box_and_misses_none(tissue_dir):
    overview, truth = _slide(tissue_dir)
    found = detect_tissue(overview)
    region = PolygonsRegion(polygons=tuple(tuple(p) for p in found.regions(50.0)))
    plan = ScanPlan(region=region, overlap=0.1, output="x.h5")
    fov = (333.0, 333.0)
    tiles = plan.tiles(*fov)
    x0, y0, x1, y1 = region.bounds
    box = ScanPlan(region={"kind": "rect", "x0": x0, "y0": y0, "x1": x1, "y1": y1}).tiles(*fov)
    assert 0 < len(tiles) < 0.8 * len(box)
    # every tissue pixel centre lies in some tile
    ii, jj = np.nonzero(truth)
    xs = overview.x0_um + (jj + 0.5) * 20.0
    ys = overview.y0_um + (ii + 0.5) * 20.0
    cx = np.array([t.x_um for t in tiles])
    cy = np.array([t.y_um for t in tiles])
    inside = (np.abs(xs[:, None] - cx) <= fov[0] / 2) & (np.abs(ys[:, None] - cy) <= fov[1] / 2)
    assert inside.any(axis=1).all()
    assert plan.summary().startswith("tissue (2 regions)")
    back = ScanPlan.from_json(plan.to_json())
    assert back == plan


def test_otsu_and_od_on_known_values():
    values = np.concatenate([np.full(100, 0.02), np.full(50, 0.5)])
    t = otsu_threshold(values)
    assert 0.02 < t <= 0.5
    od = optical_density(np.array([[[255, 255, 255], [25, 25, 25]]], np.uint8))
    assert od[0, 0] == pytest.approx(0.0, abs=1e-6) and od[0, 1] == pytest.approx(1.0, abs=0.01)


def test_the_simulators_overview_matches_its_tissue():
    sim = build_simulator(SimConfig(seed=3, camera={"width": 64, "height": 64}))
    overview = acquire_overview(sim, pixel_size_um=50.0)
    found = detect_tissue(overview)
    h, w = found.mask.shape
    xs = overview.x0_um + (np.arange(w) + 0.5) * 50.0
    ys = overview.y0_um + (np.arange(h) + 0.5) * 50.0
    truth = sim.tissue_mask(xs, ys) > 0.5
    recall = (found.mask & truth).sum() / truth.sum()
    precision = (found.mask & truth).sum() / found.mask.sum()
    assert recall > 0.98 and precision > 0.85, (recall, precision)


def test_a_prescan_builds_the_overview_from_fields(monkeypatch):
    """The hardware path, on the simulator at 10x: fields edge to edge, no autofocus, averaged
    down and pasted at their stage positions, look like the slide's truth (a macro view of
    its stain and holes, without nuclei)."""
    sim = build_simulator(
        SimConfig(
            objective="10x/0.30",
            seed=3,
            camera={"width": 512, "height": 512},
            optics={"fft_workers": 1},
        )
    )
    x0, y0, _, _ = sim.truth.slide_bounds_um
    area = (x0 + 2000, y0 + 2000, x0 + 3600, y0 + 3200)
    calls = []
    overview = prescan_overview(sim, area, 20.0, progress=lambda d, t: calls.append((d, t)))
    assert overview.image.shape == (60, 80, 3) and calls[-1] == (20, 20)
    assert (overview.image < 255).all()  # fields meet: no gaps
    expected = sim.truth.overview(20.0, 0.0)[100:160, 100:180].astype(float)
    got = overview.image.astype(float)
    r = np.corrcoef(got.mean(axis=2).ravel(), expected.mean(axis=2).ravel())[0, 1]
    assert r > 0.6, r
    shifted = np.corrcoef(got.mean(axis=2)[:, 5:].ravel(), expected.mean(axis=2)[:, :-5].ravel())
    assert r > shifted[0, 1] + 0.2  # and in the right place
    with pytest.raises(ValueError, match="slide area"):
        monkeypatch.setattr(type(sim), "truth", property(lambda self: None))
        acquire_overview(sim)
