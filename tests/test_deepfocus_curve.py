"""DeepFocus's search arithmetic (focus/deepfocus_curve.py): the curve model fit, the shift
fit, the convexity stop, golden-section steps and the mean-shift clustering."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slidescan.focus.deepfocus_curve import (
    DEPTH_LIMITS,
    CurveModel,
    _level_depth_fit,
    fit_curve,
    fit_shift,
    golden_next,
    is_convex,
    mean_shift_modes,
)

TRUE = CurveModel(
    z0=1.7, c=3.0, slope=0.01, amp=3.2, alpha=4.0, beta=1.3, gauss_amp=0.4, gauss_width=0.8
)


def test_fit_recovers_a_known_curve():
    z = np.linspace(-20, 20, 81)
    rng = np.random.default_rng(0)
    b = TRUE(z) + rng.normal(0, 0.01, z.size)
    fit = fit_curve(z, b)
    assert fit.rms < 0.015
    assert abs(fit.model.z0 - TRUE.z0) < 0.1
    width = TRUE.dip_width_um(-20, 20)
    assert abs(fit.model.dip_width_um(-20, 20) - width) / width < 0.05
    zz = np.linspace(-15, 15, 200)
    assert np.max(np.abs(fit.model(zz) - TRUE(zz))) < 0.05


def test_fwhm_of_the_moffat_is_its_half_depth_width():
    m = CurveModel(0, 1.0, 0.0, 1.0, 3.0, 2.0, 0.0, 1.0)
    half = m.moffat_fwhm_um / 2
    assert m.dip_width_um(-200, 200) == pytest.approx(m.moffat_fwhm_um, rel=5e-3)
    # the dip is 1 deep at 0, half as deep at +/- fwhm / 2
    assert m(0.0) == pytest.approx(0.0)
    assert m(half) == pytest.approx(0.5)
    assert m(-half) == pytest.approx(0.5)


def test_dip_width_counts_the_gaussian_bottom():
    # a narrow deep Gaussian inside a shallow wide Moffat: the dip is the Gaussian's
    m = CurveModel(0, 1.0, 0.0, 0.2, 10.0, 1.0, 2.0, 1.0)
    assert m.dip_width_um(-30, 30) < 0.5 * m.moffat_fwhm_um


def test_width_at_a_fixed_depth_does_not_grow_with_the_range():
    # a dip that rises 3 deep over +/-40 um: read over +/-10 um or +/-40 um, the half-depth of
    # the range moves (the calibration stack's reach would set the search); a fixed depth not
    m = CurveModel(0, 3.0, 0.0, 3.0, 6.0, 1.0, 0.0, 1.0)
    assert m.dip_width_um(-40, 40) > 1.2 * m.dip_width_um(-10, 10)
    fixed = m.dip_width_um(-40, 40, depth=1.5)
    assert m.dip_width_um(-10, 10, depth=1.5) == pytest.approx(fixed, rel=0.01)
    # the curve reaches half of 1.5 (0.75 above its least value) where (1 + u^2/36)^-1 = 0.75
    assert fixed == pytest.approx(2 * 6.0 * (1 / 0.75 - 1) ** 0.5, rel=0.01)
    # a range the curve does not rise half the depth in: the range's own half depth
    assert m.dip_width_um(-3, 3, depth=1.5) == pytest.approx(m.dip_width_um(-3, 3))


def test_fit_refuses_too_few_points():
    with pytest.raises(ValueError, match="at least 9"):
        fit_curve([0, 1, 2], [1, 0, 1])


def test_shift_fit_finds_the_offset_of_three_points():
    curve = TRUE.centred()
    focus = -3.3
    z = np.array([-8.0, 0.0, 8.0])
    b = curve(z - focus)
    fit = fit_shift(z, b, curve, (-15, 15))
    assert fit.shift_um == pytest.approx(focus, abs=1e-3)
    assert fit.rss < 1e-8


def test_shift_fit_with_a_free_offset_ignores_a_level_change():
    curve = TRUE.centred()
    z = np.array([-8.0, 0.0, 5.0, 8.0])
    b = curve(z - 2.0) + 0.3
    tied = fit_shift(z, b, curve, (-15, 15))
    free = fit_shift(z, b, curve, (-15, 15), free_offset=True)
    assert free.shift_um == pytest.approx(2.0, abs=1e-3)
    assert free.offset == pytest.approx(0.3, abs=1e-3)
    assert abs(tied.shift_um - 2.0) > abs(free.shift_um - 2.0)


def test_shift_fit_with_a_free_depth_ignores_a_deeper_curve():
    # a specimen whose curve dips 1.4x as deep, sampled unevenly about its focus (two frames
    # on one side, one on the other: what a search from a far hint holds)
    curve = TRUE.centred()
    focus = 1.5
    z = np.array([-9.0, 6.0, 10.0])
    b = 1.4 * curve(z - focus) + 0.2
    level = fit_shift(z, b, curve, (-15, 15), free_offset=True)
    loose = fit_shift(z, b, curve, (-15, 15), free_offset=True, depth_sd=10.0)
    drawn = fit_shift(z, b, curve, (-15, 15), free_offset=True, depth_sd=0.1)
    assert loose.shift_um == pytest.approx(focus, abs=1e-2)
    assert loose.depth == pytest.approx(1.4, abs=1e-2)
    assert loose.offset == pytest.approx(0.2, abs=1e-2)
    # the ridge draws the depth toward 1, so it lands between the tied fit and the free one
    assert 1.0 < drawn.depth < loose.depth
    assert abs(loose.shift_um - focus) < abs(drawn.shift_um - focus) < abs(level.shift_um - focus)


def test_shift_fit_with_a_width_prior_follows_a_wider_curve():
    # a specimen whose curve is 1.25x as wide, frames unevenly about its focus: the stretch
    # drawn to 1 by a loose prior finds it; a tight prior keeps the calibration's width
    curve = TRUE.centred()
    focus = 1.5
    z = np.array([-6.0, 2.0, 6.0, 10.0])
    wide = CurveModel(
        0.0,
        curve.c,
        curve.slope / 1.25,
        curve.amp,
        curve.alpha * 1.25,
        curve.beta,
        curve.gauss_amp,
        curve.gauss_width * 1.25,
    )
    b = wide(z - focus) + 0.1
    fixed = fit_shift(z, b, curve, (-15, 15), free_offset=True)
    loose = fit_shift(z, b, curve, (-15, 15), free_offset=True, width_sd=5.0)
    tight = fit_shift(z, b, curve, (-15, 15), free_offset=True, width_sd=1e-4)
    assert fixed.width_scale == 1.0 and tight.width_scale == 1.0
    assert loose.width_scale == pytest.approx(1.25, abs=0.04)  # the grid's 1.2361
    assert abs(loose.shift_um - focus) < 0.05 < 0.15 < abs(fixed.shift_um - focus)
    assert tight.shift_um == pytest.approx(fixed.shift_um, abs=1e-6)
    # the prior's cost is in the fit's cost: a stretch away from 1 is paid for
    assert loose.rss > fit_shift(z, wide(z - focus) + 0.1, wide, (-15, 15), free_offset=True).rss
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="width_sd"):
            fit_shift(z, b, curve, (-15, 15), free_offset=True, width_sd=bad)


def test_shift_fit_depth_needs_a_free_offset_and_stays_within_its_limits():
    curve = TRUE.centred()
    z = np.array([-8.0, 0.0, 8.0])
    b = curve(z)
    with pytest.raises(ValueError, match="depth_sd needs a free offset"):
        fit_shift(z, b, curve, (-15, 15), depth_sd=0.1)
    with pytest.raises(ValueError, match="positive finite spread"):
        fit_shift(z, b, curve, (-15, 15), free_offset=True, depth_sd=0.0)
    # a curve three times as deep: the depth is held at its upper limit
    deep = fit_shift(z, 3.0 * b, curve, (-15, 15), free_offset=True, depth_sd=10.0)
    assert deep.depth == pytest.approx(DEPTH_LIMITS[1])
    with pytest.raises(ValueError, match="positive finite spread"):
        fit_shift(z, b, curve, (-15, 15), free_offset=True, depth_sd=math.inf)
    assert fit_shift(z, b, curve, (-15, 15)).depth == 1.0


@pytest.mark.parametrize("depth_ridge", [None, 0.5, 1e-3])
@pytest.mark.parametrize("level_ridge", [0.0, 0.25])
def test_level_and_depth_are_the_exact_ridge_least_squares(level_ridge, depth_ridge):
    # against lstsq on the rows augmented with the ridges (sqrt(ridge) * (L, g - 1) = 0)
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(2, 7))
        m, b = rng.normal(0, 1, n), rng.normal(0, 1, n)
        cost, level, g = _level_depth_fit(b, m, level_ridge, depth_ridge)
        if depth_ridge is None:
            a = np.r_[np.ones(n), np.sqrt(level_ridge)][:, None]
            (want_level,), *_ = np.linalg.lstsq(a, np.r_[b - m, 0.0], rcond=None)
            assert g == 1.0
            assert level == pytest.approx(want_level, abs=1e-9)
            continue
        a = np.c_[np.r_[np.ones(n), np.sqrt(level_ridge), 0.0], np.r_[m, 0.0, np.sqrt(depth_ridge)]]
        rhs = np.r_[b, 0.0, np.sqrt(depth_ridge)]
        (want_level, want_g), *_ = np.linalg.lstsq(a, rhs, rcond=None)
        if DEPTH_LIMITS[0] <= want_g <= DEPTH_LIMITS[1]:
            assert g == pytest.approx(want_g, abs=1e-9)
            assert level == pytest.approx(want_level, abs=1e-9)
        else:  # held at the nearer limit, the level then the best for it
            held = min(max(want_g, DEPTH_LIMITS[0]), DEPTH_LIMITS[1])
            assert g == pytest.approx(held)
            assert level == pytest.approx(np.sum(b - held * m) / (n + level_ridge), abs=1e-9)
        r = b - level - g * m
        penalty = level_ridge * level**2 + depth_ridge * (g - 1) ** 2
        assert cost == pytest.approx(np.sum(r * r) + penalty, abs=1e-9)


#: the curve of a 10x/0.30 calibration on the second renderer (`stack crosscheck`), centred
CROSSCHECK_10X = CurveModel(
    z0=0.0,
    c=2.7908,
    slope=0.0,
    amp=1.6712,
    alpha=36.3984,
    beta=1.6051,
    gauss_amp=1.1205,
    gauss_width=5.1565,
)


def test_a_level_prior_keeps_the_fit_from_running_past_the_sharpest_frame():
    # A trial on the second renderer, hint 31.5 um above focus: three frames, the sharpest
    # 5.7 um below focus. A free level lays the curve over them 13 um below focus too, with
    # the curve read 0.7 ln px sharper than calibrated, which no specimen does.
    z = np.array([-5.7, 14.1, 31.5])
    b = np.array([0.164, 1.265, 1.72])
    free = fit_shift(z, b, CROSSCHECK_10X, (-45, 45), free_offset=True, depth_sd=0.1)
    drawn = fit_shift(
        z, b, CROSSCHECK_10X, (-45, 45), free_offset=True, depth_sd=0.1, offset_sd=0.2
    )
    assert free.shift_um < -12 and free.offset < -0.6
    assert abs(drawn.shift_um) < 2.5 and abs(drawn.offset) < 0.2


def test_a_level_prior_draws_the_offset_toward_zero():
    curve = TRUE.centred()
    z = np.array([-8.0, 0.0, 5.0, 8.0])
    b = curve(z - 2.0) + 0.3
    free = fit_shift(z, b, curve, (-15, 15), free_offset=True)
    loose = fit_shift(z, b, curve, (-15, 15), free_offset=True, offset_sd=100.0)
    tight = fit_shift(z, b, curve, (-15, 15), free_offset=True, offset_sd=0.05)
    assert loose.offset == pytest.approx(free.offset, abs=1e-4)
    assert loose.shift_um == pytest.approx(free.shift_um, abs=1e-3)
    assert 0.0 < tight.offset < free.offset
    with pytest.raises(ValueError, match="offset_sd needs a free offset"):
        fit_shift(z, b, curve, (-15, 15), offset_sd=0.2)


def test_convexity_stop():
    assert is_convex([-1, 0, 1], [1.0, 0.0, 1.0])
    assert not is_convex([-1, 0, 1], [-1.0, 0.0, 1.0])  # a line
    assert not is_convex([-1, 0, 1], [-1.0, 0.0, -1.0])  # a maximum
    assert not is_convex([0, 1], [1.0, 0.0])  # too few points
    # one arm of a V, slightly bent: the quadratic is not better by the margin
    assert not is_convex([0, 1, 2, 3], [3.0, 2.0, 1.02, 0.0])


def test_golden_section_step_goes_into_the_larger_side():
    z = golden_next([0.0, 4.0], [1.0, 2.0], lo=-10.0, hi=10.0)
    assert -10.0 < z < 0.0  # the best (0) has 10 um free below and 4 above
    assert z == pytest.approx(-10.0 * (1 - (math.sqrt(5) - 1) / 2))
    z2 = golden_next([-10.0, 0.0, 10.0], [2.0, 1.0, 1.5], lo=-10, hi=10)
    assert -10 < z2 < 10 and z2 not in (-10.0, 0.0, 10.0)


def test_mean_shift_picks_the_largest_cluster():
    values = [1.0, 1.1, 0.9, 1.05, 7.0, 7.2, -5.0]
    modes = mean_shift_modes(values, None, bandwidth=1.0)
    assert len(modes) == 3
    assert modes[0].centre == pytest.approx(np.mean([1.0, 1.1, 0.9, 1.05]))
    assert sorted(modes[0].members) == [0, 1, 2, 3]
    weighted = mean_shift_modes(values, [1, 1, 1, 1, 10, 10, 1], bandwidth=1.0)
    assert weighted[0].centre == pytest.approx(7.1)


def test_curve_model_round_trips_as_a_dict():
    assert CurveModel.from_dict(TRUE.to_dict()) == TRUE
