"""Focus surfaces, the online focus predictor and survey positions."""

from __future__ import annotations

import numpy as np
import pytest

from slidescan.focus.protocol import FocusError
from slidescan.focus.surface import (
    FocusPredictor,
    SurfaceError,
    farthest_point_indices,
    fit_surface,
    survey_points,
)

# A slide 15 x 10 mm: 1 um/mm tilt, a 3 um bow along x and a 1 um warp along y.
W, H = 15000.0, 10000.0


def slide(x, y):
    return (
        20 + 1e-3 * x - 0.5e-3 * y + 3 * ((x - W / 2) / (W / 2)) ** 2 + np.sin(2 * np.pi * y / 2e4)
    )


def _grid_rms(surface) -> float:
    gx, gy = np.meshgrid(np.linspace(500, W - 500, 25), np.linspace(500, H - 500, 17))
    return float(np.sqrt(np.mean((surface.predict(gx, gy) - slide(gx, gy)) ** 2)))


def test_plane_recovers_a_tilt_exactly():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, W, (8, 2))
    z = 5 + 2e-3 * xy[:, 0] - 1e-3 * xy[:, 1]
    s = fit_surface(xy, z, kind="plane")
    assert s.residual_rms == pytest.approx(0.0, abs=1e-9)
    assert s.predict(1000.0, 2000.0) == pytest.approx(5 + 2 - 2)
    assert isinstance(s.predict(1.0, 2.0), float)
    assert s(np.zeros((2, 3)), np.ones((2, 3))).shape == (2, 3)  # vectorised, broadcast


def test_x_y_z_form_equals_xy_z_form():
    xy = survey_points((0, 0, W, H), 12, seed=0)
    z = slide(*xy.T)
    a = fit_surface(xy, z, kind="quadratic")
    b = fit_surface(xy[:, 0], xy[:, 1], z, kind="quadratic")
    assert a.predict(123.0, 456.0) == pytest.approx(b.predict(123.0, 456.0))


@pytest.mark.parametrize(
    ("kind", "n", "max_rms"),
    [("plane", 16, 1.2), ("quadratic", 16, 0.15), ("tps", 30, 0.2)],
)
def test_surfaces_follow_a_curved_slide(kind, n, max_rms):
    rng = np.random.default_rng(1)
    xy = survey_points((0, 0, W, H), n, seed=2)
    z = slide(*xy.T) + rng.normal(0, 0.1, n)
    s = fit_surface(xy, z, kind=kind, smoothing=1e-3 if kind == "tps" else 0.0)
    assert _grid_rms(s) < max_rms
    assert np.isfinite(s.loo_rms)


def test_more_flexible_surfaces_fit_the_curved_slide_better():
    xy = survey_points((0, 0, W, H), 30, seed=3)
    z = slide(*xy.T)
    rms = {k: _grid_rms(fit_surface(xy, z, kind=k)) for k in ("plane", "quadratic", "tps")}
    assert rms["tps"] < rms["plane"] and rms["quadratic"] < rms["plane"] / 5


@pytest.mark.parametrize("kind", ["plane", "quadratic", "tps"])
def test_robust_fit_drops_failed_measurements(kind):
    rng = np.random.default_rng(4)
    xy = survey_points((0, 0, W, H), 30, seed=5)
    truth = 20 + 1e-3 * xy[:, 0] - 0.5e-3 * xy[:, 1] if kind == "plane" else slide(*xy.T)
    z = truth + rng.normal(0, 0.1, 30)
    z[[4, 17]] += [6.0, -5.0]  # two foci locked onto dust / the cover glass
    plain = fit_surface(xy, z, kind=kind)
    robust = fit_surface(xy, z, kind=kind, robust=True)
    assert sorted(robust.outliers) == [4, 17]
    assert robust.n_points == 28
    if kind != "tps":  # an interpolating spline has zero residuals either way
        assert robust.residual_rms < 0.2 < plain.residual_rms


def test_weights_pull_the_fit_toward_confident_points():
    xy = np.array([[0, 0], [1000, 0], [0, 1000], [1000, 1000]], float)
    z = np.array([0.0, 0.0, 0.0, 4.0])
    even = fit_surface(xy, z, kind="plane")
    trusted = fit_surface(xy, z, kind="plane", weights=np.array([1, 1, 1, 100.0]))
    assert abs(trusted.predict(1000, 1000) - 4.0) < abs(even.predict(1000, 1000) - 4.0)


def test_too_few_or_degenerate_points_give_clear_errors():
    with pytest.raises(
        SurfaceError, match="quadratic focus surface needs at least 6 points, got 5"
    ):
        fit_surface(np.zeros((5, 2)) + np.arange(5)[:, None], np.zeros(5), kind="quadratic")
    line = np.column_stack([np.arange(5.0), np.arange(5.0)])
    for kind in ("plane", "tps"):
        with pytest.raises(SurfaceError, match="collinear"):
            fit_surface(line, np.zeros(5), kind=kind)
    with pytest.raises(SurfaceError, match="unknown surface kind"):
        fit_surface(np.zeros((3, 2)), np.zeros(3), kind="cubic")  # type: ignore[arg-type]
    with pytest.raises(SurfaceError, match="finite"):
        fit_surface(np.eye(3)[:, :2], np.array([0, np.nan, 1.0]))
    assert issubclass(SurfaceError, FocusError) and issubclass(SurfaceError, ValueError)


# -- predictor ---------------------------------------------------------------------------------


def _raster(step=650.0):
    xs, ys = np.arange(0, W, step), np.arange(0, H, step)
    for j, y in enumerate(ys):
        for x in xs if j % 2 == 0 else xs[::-1]:
            yield float(x), float(y)


def test_predictor_follows_a_serpentine_scan_and_rejects_failed_foci():
    rng = np.random.default_rng(6)
    p = FocusPredictor()
    errors, sigmas, planted = [], [], set()
    for n, (x, y) in enumerate(_raster(1300.0), start=1):
        if len(p) >= 15:
            z_hat, sigma = p.predict(x, y)
            errors.append(z_hat - slide(x, y))
            sigmas.append(sigma)
        z = slide(x, y) + rng.normal(0, 0.1)
        if n > 5 and n % 17 == 0:
            z += 6.0 if n % 2 else -6.0
            planted.add((x, y))
        p.add(x, y, z)
    rejected = {(x, y) for x, y, _ in p.rejected}
    assert rejected == planted
    errors = np.abs(errors)
    assert np.sqrt(np.mean(errors**2)) < 0.3
    # The uncertainty is honest: most errors lie within it, and it is not inflated.
    assert np.mean(errors <= 2 * np.array(sigmas)) > 0.85
    assert np.median(sigmas) < 0.5


def test_predictor_stages_and_uncertainty_growth():
    p = FocusPredictor(default_z=7.0, default_uncertainty_um=20.0)
    assert p.predict(0, 0) == (7.0, 20.0)
    p.add(0, 0, 10.0)
    assert p.predict(100, 0)[0] == 10.0
    p.add(1000, 0, 11.0)
    p.add(0, 1000, 9.0)
    z, s_near = p.predict(500, 500)
    assert z == pytest.approx(10.0)  # the local plane through the three
    _, s_far = p.predict(20000, 20000)
    assert s_far > 10 * s_near  # far from every known point the uncertainty grows


def test_predictor_without_points_or_default_raises():
    with pytest.raises(FocusError, match="no focus points"):
        FocusPredictor().predict(0, 0)


def test_predictor_ignores_unusable_points():
    p = FocusPredictor()
    assert not p.add(0, 0, float("nan"))
    assert not p.add(0, 0, 1.0, confidence=0.0)
    assert len(p) == 0


def test_predictor_surface_for_a_saved_map():
    p = FocusPredictor()
    for x, y in survey_points((0, 0, W, H), 20, seed=7):
        p.add(x, y, slide(x, y))
    assert _grid_rms(p.surface("quadratic")) < 0.15


# -- survey points -----------------------------------------------------------------------------


def test_survey_points_in_bounds_are_spread_and_reach_the_corners():
    pts = survey_points((100, 200, 15100, 10200), 9)
    assert pts.shape == (9, 2)
    assert np.all((pts >= [100, 200]) & (pts <= [15100, 10200]))
    d = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert d.min() > 3000  # well spread: no two points close together
    corners = np.array([[100, 200], [15100, 200], [100, 10200], [15100, 10200]])
    nearest = np.min(np.hypot(*(corners[:, None] - pts[None]).transpose(2, 0, 1)), axis=1)
    assert np.all(nearest < 1500)


def test_survey_points_pick_among_tissue_tiles():
    rng = np.random.default_rng(8)
    tiles = rng.uniform(0, 5000, (200, 2))
    pts = survey_points(tiles, 12)
    assert len({tuple(p) for p in pts}) == 12
    assert all(any(np.all(p == t) for t in tiles) for p in pts)
    assert survey_points(tiles[:5], 12).shape == (5, 2)  # never more than there are


def test_survey_jitter_is_seeded_and_bad_regions_are_refused():
    a = survey_points((0, 0, 1000, 1000), 5, seed=1)
    b = survey_points((0, 0, 1000, 1000), 5, seed=1)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(SurfaceError, match="region must be"):
        survey_points(np.zeros((3, 3)), 4)
    with pytest.raises(SurfaceError, match="at least one"):
        survey_points((0, 0, 1, 1), 0)


def test_farthest_point_sampling_starts_central():
    pts = np.array([[0, 0], [10, 0], [5, 5], [0, 10], [10, 10]], float)
    idx = farthest_point_indices(pts, 5)
    assert idx[0] == 2 and sorted(idx) == [0, 1, 2, 3, 4]
