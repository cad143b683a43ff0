"""Image formation: Beer-Lambert in focus, contrast peaking at the recorded truth, revisits."""

from __future__ import annotations

import numpy as np
import pytest

from slidescan.hardware.sim import SimCameraConfig, SimConfig, SpecimenConfig, build_simulator
from slidescan.hardware.sim.psf import focal_shift_factor
from slidescan.hardware.sim.render import absorption_layers
from slidescan.hardware.sim.stains import transmission

CENTRE = (25000.0, 10000.0)  # middle of the default tissue area: always tissue


def _small(size: int, **kw) -> SimConfig:
    return SimConfig(camera=SimCameraConfig(width=size, height=size, noise=False), **kw)


def _brenner(img: np.ndarray) -> float:
    g = img.mean(axis=2)
    return float(np.sum((g[:, 2:] - g[:, :-2]) ** 2) + np.sum((g[2:] - g[:-2]) ** 2))


def _normalised_variance(img: np.ndarray) -> float:
    g = img.mean(axis=2)
    return float(g.var() / g.mean())


def _peak(zs: np.ndarray, values: np.ndarray) -> float:
    j = int(np.clip(np.argmax(values), 1, len(zs) - 2))
    a, b, _ = np.polyfit(zs[j - 1 : j + 2] - zs[j], values[j - 1 : j + 2], 2)
    return float(zs[j] - b / (2 * a))


def test_absorption_shares_add_up_to_beer_lambert():
    rng = np.random.default_rng(0)
    od = rng.uniform(0, 0.8, (4, 3, 16, 16)).astype(np.float32)
    od[:, :, 0, 0] = 0.0  # clear glass
    a = absorption_layers(od)
    np.testing.assert_allclose(a.sum(axis=0), 1.0 - 10.0 ** -od.sum(axis=0), atol=2e-6)
    assert np.all(a[:, :, 0, 0] == 0)
    # the share does not depend on the order of the slabs
    np.testing.assert_allclose(absorption_layers(od[::-1])[::-1], a, atol=1e-7)
    # weak absorbers: linear model A_k = ln(10) OD_k
    weak = od * 1e-4
    np.testing.assert_allclose(absorption_layers(weak), np.log(10) * weak, rtol=1e-3)


def test_in_focus_render_is_beer_lambert_blurred_by_the_in_focus_psf():
    """Thin section at focus: the image is I0 10^-OD convolved with the in-focus PSF (here
    recomputed independently with numpy's FFT and the model's OTF)."""
    sim = build_simulator(_small(128, seed=3, specimen=SpecimenConfig(thickness_um=0.0)))
    x, y = CENTRE
    truth = sim.field_truth(x, y)
    assert set(truth.layer_focus_um) == {truth.true_focus_um}
    image = sim.render_intensity(x, y, truth.true_focus_um)
    r = sim.renderer
    xs, ys = r.pixel_coords(x, y)
    bl = transmission(sim.specimen.od_layers(xs, ys).sum(axis=0)).astype(np.float64)
    hp, wp = r.padded
    rho = np.hypot(np.fft.fftfreq(hp, r.pixel_um)[:, None], np.fft.rfftfreq(wp, r.pixel_um))
    oy, ox = r.offset
    for c, lam in enumerate(sim.optics.wavelengths_um):
        otf = np.interp(rho, *sim.renderer.model.otf_profile(0.0, lam), right=0.0)
        expected = np.fft.irfft2(np.fft.rfft2(bl[c]) * otf, s=(hp, wp))[
            oy : oy + 128, ox : ox + 128
        ]
        np.testing.assert_allclose(image[..., c], expected, atol=2e-3)
    # brightness is kept: the PSF only moves light around
    assert image.mean() == pytest.approx(bl[:, oy : oy + 128, ox : ox + 128].mean(), abs=5e-3)


@pytest.fixture(scope="module")
def sim384():
    return build_simulator(_small(384, seed=0))


@pytest.mark.parametrize("offset", [(0.0, 0.0), (-1500.0, 900.0), (1200.0, -1300.0)])
def test_contrast_peaks_at_recorded_true_focus(sim384, offset):
    """20x/0.75, 3 um section (1.8 um of drive): contrast metrics peak at the recorded truth,
    the section's contrast-weighted centre."""
    x, y = CENTRE[0] + offset[0], CENTRE[1] + offset[1]
    truth = sim384.true_focus_um(x, y)
    zs = truth + np.arange(-1.2, 1.21, 0.1)
    images = [sim384.render_intensity(x, y, z) for z in zs]
    nv = _peak(zs, np.array([_normalised_variance(i) for i in images]))
    assert abs(nv - truth) < 0.05
    br = _peak(zs, np.array([_brenner(i) for i in images]))
    assert abs(br - truth) < 0.1


def test_thin_section_every_metric_peaks_at_truth():
    sim = build_simulator(_small(192, seed=5, specimen=SpecimenConfig(thickness_um=0.5)))
    x, y = CENTRE[0] + 700.0, CENTRE[1] - 400.0
    truth = sim.true_focus_um(x, y)
    zs = truth + np.arange(-0.8, 0.81, 0.1)
    images = [sim.render_intensity(x, y, z) for z in zs]
    for metric in (_brenner, _normalised_variance):
        assert abs(_peak(zs, np.array([metric(i) for i in images])) - truth) < 0.05


def test_defocus_blurs_monotonically_and_symmetrically(sim384):
    x, y = CENTRE
    truth = sim384.true_focus_um(x, y)
    sharp = [_brenner(sim384.render_intensity(x, y, truth + d)) for d in (0.0, 2.0, 5.0, 10.0)]
    assert sharp[0] > sharp[1] > sharp[2] > sharp[3]
    below = _brenner(sim384.render_intensity(x, y, truth - 5.0))
    assert below == pytest.approx(sharp[2], rel=0.1)  # pupil model without aberration


def test_revisiting_a_position_renders_the_identical_specimen():
    overrides = {"preset": "commercial", "xy_jitter_um": 0.0, "z_repeatability_um": 0.0}
    cfg = _small(96, seed=11).model_copy(update={"stage": SimConfig(stage=overrides).stage})
    sim = build_simulator(cfg)
    a = (CENTRE[0] + 333.3, CENTRE[1] - 77.7)
    sim.move_xy(*a)
    first = sim.snap()
    sim.move_xy(a[0] + 2500.0, a[1] + 1800.0)
    sim.snap()
    sim.renderer.clear_cache()
    sim.move_xy(*a)
    again = sim.snap()
    np.testing.assert_array_equal(first.image, again.image)
    assert first.meta["true_focus_um"] == again.meta["true_focus_um"]
    # a fresh simulator with the same seed, arriving directly, sees the same slide
    other = build_simulator(cfg)
    np.testing.assert_array_equal(
        other.render(*a, first.meta["true_position_um"][2], noise=False), first.image
    )
    # ... and another seed a different one
    third = build_simulator(cfg.model_copy(update={"seed": 12}))
    assert not np.array_equal(third.render(*a, 0.0, noise=False), first.image)


def test_render_reports_what_the_camera_would_see(sim384):
    x, y = CENTRE
    image = sim384.render(x, y, sim384.true_focus_um(x, y), noise=False)
    assert image.shape == (384, 384, 3) and image.dtype == np.uint8
    noisy = sim384.render(x, y, sim384.true_focus_um(x, y), rng=np.random.default_rng(1))
    diff = noisy.astype(float) - image
    assert 0.5 < diff.std() < 5.0 and abs(diff.mean()) < 0.2


def _thin(size: int = 160, **optics) -> object:
    return build_simulator(
        _small(size, seed=5, specimen=SpecimenConfig(thickness_um=0.0), optics=optics)
    )


def _channel_brenner(img: np.ndarray) -> float:
    return float(np.sum((img[:, 2:] - img[:, :-2]) ** 2) + np.sum((img[2:] - img[:-2]) ** 2))


def test_axial_chromatic_shift_moves_each_channels_focus():
    sim = _thin(chromatic_shift_um=(0.6, 0.0, -0.6))
    x, y = CENTRE[0] + 700.0, CENTRE[1] - 400.0
    truth = sim.true_focus_um(x, y)
    zs = truth + np.arange(-1.5, 1.51, 0.1)
    images = [sim.render_intensity(x, y, z) for z in zs]
    for c, shift in enumerate((0.6, 0.0, -0.6)):
        peak = _peak(zs, np.array([_channel_brenner(i[..., c]) for i in images]))
        assert peak - truth == pytest.approx(shift, abs=0.03)


def test_spherical_aberration_tells_above_from_below_focus():
    x, y = CENTRE[0] + 700.0, CENTRE[1] - 400.0
    ratios = {}
    for dt in (0.0, 15.0, -15.0):
        sim = _thin(coverslip_error_um=dt)
        truth = sim.true_focus_um(x, y)
        above = _brenner(sim.render_intensity(x, y, truth + 1.2))
        below = _brenner(sim.render_intensity(x, y, truth - 1.2))
        ratios[dt] = above / below
    assert ratios[0.0] == pytest.approx(1.0, abs=0.005)
    assert ratios[15.0] > 1.04 and ratios[-15.0] < 0.96  # the sign follows the glass error


def test_slabs_are_spread_by_the_focal_shift_factor():
    default = build_simulator(_small(64, seed=1))
    t = default.field_truth(*CENTRE)
    factor = focal_shift_factor(0.75, 1.0, 1.52)
    assert default.focal_shift_factor == factor
    assert np.diff(t.layer_focus_um) == pytest.approx([0.75 / factor] * 3)  # 3 um, 4 slabs
    custom = build_simulator(_small(64, seed=1, specimen=SpecimenConfig(focal_shift_factor=2.0)))
    assert np.diff(custom.field_truth(*CENTRE).layer_focus_um) == pytest.approx([0.375] * 3)
    assert min(t.layer_focus_um) < t.true_focus_um < max(t.layer_focus_um)


def test_focal_shift_factor_is_paraxial_at_low_na_and_grows_with_na():
    assert focal_shift_factor(0.05, 1.0, 1.52) == pytest.approx(1.52, abs=0.002)
    values = [focal_shift_factor(na, 1.0, 1.52) for na in (0.3, 0.5, 0.75, 0.95)]
    assert values == sorted(values)
    assert values[2] == pytest.approx(1.70, abs=0.01)
    # and it stays below the marginal-ray ratio tan(theta_air) / tan(theta_medium)
    for na, v in zip((0.3, 0.5, 0.75, 0.95), values, strict=True):
        marginal = np.tan(np.arcsin(na)) / np.tan(np.arcsin(na / 1.52))
        assert 1.52 < v < marginal
